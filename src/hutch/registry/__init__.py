"""OCI distribution API client: resolve, auth (bearer/basic), fetch, push, credentials.

May import: hutch.util, hutch.oci, hutch.errors, hutch.config; httpx lazily.
"""
