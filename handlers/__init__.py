"""Handler library shipped inside every model archive.

Each handler follows one contract: decode one request -> validate -> collate one batch tensor -> infer on the
worker's device -> one JSON answer per request, in order. Client mistakes become a per-request 4xx; they
never fail the batch.
"""
