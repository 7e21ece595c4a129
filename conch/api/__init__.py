"""The Docker Engine REST API (v1.50; v1.24 and up accepted), as an adapter over the engine.

Contract: a route parses the request (``params``), calls ONE engine method
(``params.call_engine``: sync methods run in a worker thread, async ones are awaited),
and serialises the result into Docker's PascalCase JSON. Docker's JSON shapes live only
here and in ``conch.client``. Engine errors are ``conch.errors`` kinds; ``errors`` turns
them into dockerd's ``{"message": "..."}`` bodies with each kind's ``http_status``.
Nothing is imported by this package's ``__init__`` (route modules import
``conch.api.hijack``/``streams``/``params`` while ``server`` imports them).

Modules::

    server.py          create_app(engine), serving(app, "unix:///…sock"); version prefix,
                       dockerd headers, error middleware, ROUTE_MODULES
    params.py          ENGINE, engine_of, api_version, call_engine, json_response,
                       parse_bool, parse_int, parse_filters, parse_timestamp, field,
                       API_VERSION / MIN_API_VERSION, docker_headers
    errors.py          kinds -> HTTP; NotImplementedYet (501)
    streams.py         stream_json_lines (events, progress), stream_bytes (logs, tars),
                       stdcopy_frame
    hijack.py          hijack(request, multiplexed=…) -> Hijacked (attach, exec start)
    routes_system.py   /_ping /version /info /events /system/df
    routes_images.py   /images/…
    routes_volumes.py  /volumes/… (engine.volumes: list(filters), create, get, remove,
                       prune; see the module)

Adding a route module: write ``register(add)`` calling ``add("GET", "/containers/json",
handler)`` (no version prefix: ``add`` registers both forms), and list the module in
``server.ROUTE_MODULES``.

The engine seam (what ``create_app(engine)`` needs; records may be dataclasses or
mappings, read by snake_case name through ``params.field``; missing fields get
dockerd's neutral defaults)::

    engine.version() -> record
        version, git_commit, build_time, kernel_version, os, arch,
        components: {name: version} (extra Components entries, e.g. conch-runtime)
    engine.info() -> record
        id, name, containers, containers_running, containers_paused,
        containers_stopped, images, driver, driver_status [(k, v)], memory_limit,
        swap_limit, cpu_cfs_period, cpu_cfs_quota, cpu_shares, cpuset, pids_limit,
        oom_kill_disable, ipv4_forwarding, debug, n_fd, n_tasks (-> NGoroutines),
        system_time, logging_driver, cgroup_driver, cgroup_version, n_events_listener,
        kernel_version, operating_system, os_version, os_type, architecture, ncpu,
        mem_total, root_dir, http_proxy, https_proxy, no_proxy, labels, server_version,
        runtimes {name: path}, default_runtime, live_restore, security_options, warnings
    engine.events.subscribe(*, since: int | None, until: int | None,
                            filters: dict[str, list[str]]) -> AsyncIterator[Event]
        NOT awaited: returns an async iterator. since/until are ns since the epoch.
        Yields past events with time >= since, then live ones; ends after ``until``
        (or never). The engine applies Docker's filters (type, event, container, image,
        label, ...). Event: type ("container", "image", "network", "volume", "daemon"),
        action ("create", "start", "die", "tag", ...), actor_id, attributes {str: str}
        (container events carry "name" and "image"; "exitCode" on die), time_nano,
        scope ("local").
    engine.disk_usage() -> record
        layers_size, images [Image], containers [records: id, name, image, image_id,
        command, created, state, status, size_rw, size_root_fs, labels],
        volumes [records: name, driver, mountpoint, labels, created_at, size, ref_count]
    engine.images  (conch.images.store.ImageService, or a facade adding container users
                    and import/load/save)
        list() -> [Image]                  (filters are applied by the route)
        get(name) -> Image                 (NotFound "No such image: x")
        history(name) -> [HistoryEntry]
        tag(name, ref) -> Image            ref = "repo[:tag]"
        remove(name, *, force) -> [{"Untagged": ..} | {"Deleted": ..}]
        prune(*, dangling_only) -> PruneResult(deleted, space_reclaimed)
        import_image(body: BinaryIO, ref: str | None, *, changes: list[str],
                     message: str, platform: str | None) -> Image
        load(body: BinaryIO) -> [str]      names loaded (or IDs of unnamed images)
        save(names: list[str], out: BinaryIO) -> None   writes a docker-save tarball

The test double is ``conch.testing.fake_engine.FakeEngine`` (in memory, real records).
"""
