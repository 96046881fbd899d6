"""The guest agent and the framed protocol it shares with the host.

Everything in this package is standard-library-only Python: the package is copied as-is
into every sandbox (as ``/opt/pyro/pyro_guest``) and run there with the guest's python3.
Modules here use relative imports only, so the package works under either name.
"""
