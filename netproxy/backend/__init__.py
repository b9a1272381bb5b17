"""Load rules into Linux network namespaces and read them back.

``netns`` manages namespaces (and refuses the host's own), ``xtables`` runs
iptables-restore / iptables-save of one variant inside a namespace, ``savetext`` splits saved
text into chains, ``plan`` works out the smallest restore payload that turns the current
state into the desired one, ``engine`` ties them together with a rollback on failure, and
``iptc_backend`` does the same through python-iptables (legacy tables only).
"""
