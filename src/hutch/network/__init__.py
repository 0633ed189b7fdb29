"""Container networking: bridges, veth, IPAM, NAT and port maps, /etc/hosts and resolv.conf.
May import hutch.linux, hutch.util, hutch.config, hutch.oci, hutch.errors."""
