"""HTTP/1.1 on httptools (llhttp): the client-facing server and the upstream client.

Knows nothing of LLMs: bytes in, bytes out, keep-alive, backpressure and timeouts.
"""
