"""The rules and use cases: sessions, vouchers, blocks, phone login, NAS mode, admins,
statistics, the dashboard's queries. Imports config, store and the gateway's pure parts;
tells the outside through ports (routers.Disconnect, sms.SmsSender).
"""
