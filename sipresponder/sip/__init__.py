"""The SIP protocol, pure and stateless: codes, the generic grammar, URIs, messages and
their parts, the parser and the stream framer, the serializer, SDP, the responses a
request gets, and Digest authentication's computation and grammar.

Imports nothing of the project but ``errors`` and ``version``; no I/O, no clock.
"""
