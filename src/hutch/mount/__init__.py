"""Mounts as data (type, source, options) and the code that applies and undoes them.

May import: hutch.linux, hutch.oci, hutch.util, hutch.errors.
"""
