"""`make demo`: the system with embedded defaults and believable data. Puts the pieces together
like the CLI does.
"""
