"""Containers: records and state machine, spec generation from image config + user options,
monitor, logs, exec, commit.

May import hutch.image, hutch.runtime (only its CLI as a subprocess or its state helpers),
hutch.network, hutch.oci, hutch.mount, hutch.util, hutch.config, hutch.errors.
"""
