"""Distribution: pull, push, login and distribution inspect against registries.

Contract: ``service.Distribution`` is what the engine facade holds; its methods are
async generators of ``Progress`` items (docker's jsonmessage stream). ``pull`` fetches
manifests and blobs into the content store and unpacks them; ``push`` uploads an image,
compressing layers while it streams them (``push_stream``). The wire protocol is
``conch.registry.client``.
"""
