"""conchd: the daemon's main and its composition root (the one place concrete objects are
built and wired: stores, snapshotter, images, runtime, shim, engine, API server)."""
