"""The asyncio glue: sockets (UDP, TCP), the server that runs the endpoint on them, the
worker processes and the logs.  It asks the core; it makes no protocol decision.
"""
