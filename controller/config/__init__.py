"""What sites.yaml says: the YAML source, the frozen model, its value types and the checks
across objects. Imports nothing of the controller but the identifiers of services.identity
(a fixed host's MAC and address).
"""
