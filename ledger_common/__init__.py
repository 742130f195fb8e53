"""What every component needs and none may copy: settings, named SQL, problem+json, Basic auth, SQS, nudges.

Imports the standard library, msgspec and (lazily) boto3 only: never cell, router, worker or control_plane.
"""
