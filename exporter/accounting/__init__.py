"""What a request cost: pure usage parsers, the stream meter, prices and the bill.

Nothing here does I/O; the gateway feeds it the bytes the client received.
"""
