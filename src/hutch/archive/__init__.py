"""Layer tars: safe apply (whiteouts, opaque dirs, links, devices, xattrs) and diff.

May import: hutch.linux, hutch.util, hutch.oci, hutch.errors. Placement never leaves the
root whatever the tar says.
"""
