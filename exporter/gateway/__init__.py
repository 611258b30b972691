"""The one hot path: route a request, stream it up, stream the answer down, meter both.

Every request ends in exactly one RequestRecord, handed to each sink (metrics, history).
"""
