"""Image verbs: images, rmi, tag, import, history, save, load, image prune
(docker/cli's ``cli/command/image``); pull and
push are in ``registry_cmds``."""

from __future__ import annotations

import os
import time
TYPE_CHECKING = False  # not `from typing import`: typing costs ms of CLI start-up
if TYPE_CHECKING:
    from typing import Any, Iterable

from conch import errors
from conch.cli import format as fmt
from conch.cli.main import CommandError, Context, describe_error

IMAGES_HEADERS = {
    "Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST",
    "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
    "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
    "VirtualSize": "VIRTUAL SIZE",
}
IMAGES_DEFAULT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_DIGESTS = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                   "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}
HISTORY_DEFAULT = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="/:@")


def split_repo_tag(ref: str) -> tuple[str, str]:
    """'host:5000/a/b:v1' -> ('host:5000/a/b', 'v1'); no tag -> 'latest'; digests kept."""
    if "@" in ref:
        return ref.split("@", 1)[0], ""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def _rfc3339(ts: float) -> str:
    """Go's ``time.Unix(ts, 0).Format(time.RFC3339)``: local time, "Z" when UTC."""
    tm = time.localtime(ts)
    off = tm.tm_gmtoff or 0
    zone = "Z" if off == 0 else f"{'+' if off > 0 else '-'}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", tm) + zone


def _created_at(ts: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %z %Z")


def image_rows(images: list[dict[str, Any]], *, trunc: bool = True, digests: bool = False,
               now: float | None = None) -> list[fmt.Row]:
    """One row per tag (docker's ``imageFormat``); untagged images show ``<none>``."""
    now = time.time() if now is None else now
    rows = []
    for img in images:
        image_id = img.get("Id", "")
        shown_id = image_id if not trunc else fmt.trunc_id(image_id)
        created = img.get("Created", 0)
        base = dict(
            ID=shown_id,
            CreatedSince=fmt.human_duration(now - created) + " ago" if created else "N/A",
            CreatedAt=_created_at(created),
            Size=fmt.human_size(img.get("Size", 0)),
            # docker: units.HumanSize (4 digits) here, HumanSizeWithPrecision(.., 3) for Size
            VirtualSize=fmt.human_size(img.get("VirtualSize", img.get("Size", 0)), 4),
            SharedSize="N/A" if img.get("SharedSize", -1) < 0 else fmt.human_size(img["SharedSize"]),
            UniqueSize="N/A" if img.get("SharedSize", -1) < 0 else
            fmt.human_size(img.get("Size", 0) - img["SharedSize"]),
            Containers="N/A" if img.get("Containers", -1) < 0 else str(img["Containers"]),
        )
        repo_digests: dict[str, list[str]] = {}
        for d in img.get("RepoDigests") or []:
            if d == "<none>@<none>":
                continue
            repo, _, dig = d.partition("@")
            repo_digests.setdefault(repo, []).append(dig)
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
        emitted = False
        for t in tags:
            repo, tag = split_repo_tag(t)
            digest = (repo_digests.get(repo) or ["<none>"])[0]
            rows.append(fmt.Row(Repository=repo, Tag=tag, Digest=digest, **base))
            emitted = True
        if not tags:
            for repo, digs in repo_digests.items():
                for dig in digs:
                    rows.append(fmt.Row(Repository=repo, Tag="<none>",
                                        Digest=dig if digests else "<none>", **base))
                    emitted = True
        if not emitted:
            rows.append(fmt.Row(Repository="<none>", Tag="<none>", Digest="<none>", **base))
    return rows


def cmd_images(ctx: Context, argv: list[str]) -> int:
    from conch.cli.verb_common import filters_json

    p = ctx.parser("[OPTIONS] [REPOSITORY[:TAG]]", "List images")
    p.add_argument("-a", "--all", action="store_true", help="Show all images (default hides intermediate images)")
    p.add_argument("--digests", action="store_true", help="Show digests")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    ns = p.parse(argv)
    filters = list(ns.filter)
    if ns.reference:
        filters.append(f"reference={ns.reference}")
    params: dict[str, Any] = {}
    if ns.all:
        params["all"] = 1
    if ns.digests:
        params["digests"] = 1
    if filters:
        params["filters"] = filters_json(filters)
    images = ctx.client.get("/images/json", **params) or []
    rows = image_rows(images, trunc=not ns.no_trunc, digests=ns.digests)
    if ns.quiet:
        seen = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        ctx.stdout.write("".join(i + "\n" for i in seen))
        return 0
    template = ns.format or (IMAGES_DIGESTS if ns.digests else IMAGES_DEFAULT)
    ctx.stdout.write(fmt.render(template, rows, IMAGES_HEADERS, type_name="*formatter.imageContext",
                                default=IMAGES_DIGESTS if ns.digests else IMAGES_DEFAULT))
    return 0


def cmd_rmi(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] IMAGE [IMAGE...]", "Remove one or more images")
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="Do not delete untagged parents")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    ns = p.parse(argv)
    params: dict[str, Any] = {}
    if ns.force:
        params["force"] = 1
    if ns.no_prune:
        params["noprune"] = 1
    status = 0
    for name in ns.images:
        try:
            report = ctx.client.delete(f"/images/{_q(name)}", **params) or []
        except errors.ConchError as exc:
            ctx.err(describe_error(exc, ctx.host))
            status = 1
            continue
        for item in report:
            if item.get("Untagged"):
                ctx.out(f"Untagged: {item['Untagged']}")
            if item.get("Deleted"):
                ctx.out(f"Deleted: {item['Deleted']}")
    return status


def cmd_tag(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    ns = p.parse(argv)
    from conch.oci.reference import Reference

    try:
        Reference.parse(ns.target, default_tag=False)
    except errors.ConchError as exc:
        raise CommandError(f"Error parsing reference: \"{ns.target}\" is not a valid "
                           f"repository/tag: {exc}") from exc
    repo, tag = split_repo_tag(ns.target)
    ctx.client.post(f"/images/{_q(ns.source)}/tag", repo=repo, tag=tag)
    return 0


def _print_json_stream(ctx: Context, messages: Iterable[dict[str, Any]]) -> str | None:
    """Print a JSON-message stream (``stream``/``status``); raise on ``error``."""
    last = None
    for msg in messages:
        if msg.get("error") or msg.get("errorDetail"):
            raise errors.ConchError(msg.get("error") or msg["errorDetail"].get("message", ""))
        if msg.get("stream"):
            ctx.out(msg["stream"], end="")
        elif msg.get("status"):
            last = msg["status"]
    return last


def _open_input(ctx: Context, path: str | None):
    if path in (None, "-"):
        stdin = ctx.stdin
        return getattr(stdin, "buffer", stdin)
    try:
        return open(path, "rb")
    except OSError as exc:
        raise CommandError(f"Error: open {path}: {(exc.strerror or '').lower()}") from exc


def cmd_import(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] file|URL|- [REPOSITORY[:TAG]]", "Import the contents from a tarball to create a filesystem image")
    p.add_argument("-c", "--change", action="append", default=[], help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", help="Set commit message for imported image")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    p.add_argument("source", metavar="file|URL|-")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    ns = p.parse(argv)
    params: dict[str, Any] = {}
    data = None
    if ns.source.startswith(("http://", "https://")):
        params["fromSrc"] = ns.source
    else:
        params["fromSrc"] = "-"
        data = _open_input(ctx, ns.source)
    if ns.reference:
        params["repo"], params["tag"] = split_repo_tag(ns.reference)
    if ns.message:
        params["message"] = ns.message
    if ns.change:
        params["changes"] = ns.change
    if ns.platform:
        params["platform"] = ns.platform
    if data is None:
        stream = ctx.client.stream_json("POST", "/images/create", params=params)
    else:
        resp = ctx.client.send_file("POST", "/images/create", data, params=params,
                                    headers={"Content-Type": "application/x-tar"})
        stream = ctx.client.stream_json("POST", "/images/create", response=resp)
    last = _print_json_stream(ctx, stream)
    if last:
        ctx.out(last)
    return 0


def cmd_history(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] IMAGE", "Show the history of an image")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("-H", "--human", action="store_true", default=True, help="Print sizes and dates in human readable format (default true)")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("image", metavar="IMAGE")
    ns = p.parse(argv)
    history = ctx.client.get(f"/images/{_q(ns.image)}/history") or []
    now = time.time()
    rows = []
    for h in history:
        hid = h.get("Id") or "<missing>"
        if hid != "<missing>" and not ns.no_trunc:
            hid = fmt.trunc_id(hid)
        created_by = (h.get("CreatedBy") or "").replace("\t", " ")
        if not ns.no_trunc:
            created_by = fmt.ellipsis(created_by, 45)
        created = h.get("Created", 0)
        rows.append(fmt.Row(
            ID=hid,
            CreatedSince=(fmt.human_duration(now - created) + " ago") if ns.human else _rfc3339(created),
            CreatedAt=_rfc3339(created),  # docker's historyContext: time.RFC3339, local time
            CreatedBy=created_by,
            Size=fmt.human_size(h.get("Size", 0)) if ns.human else str(h.get("Size", 0)),
            Comment=h.get("Comment", ""),
        ))
    template = "{{.ID}}" if ns.quiet else (ns.format or HISTORY_DEFAULT)
    ctx.stdout.write(fmt.render(template, rows, HISTORY_HEADERS, type_name="*image.historyContext",
                                default=HISTORY_DEFAULT))
    return 0


def write_stream(ctx: Context, chunks: Iterable[bytes], output: str | None) -> int:
    """Write a binary stream to ``output`` or stdout (never to a terminal, as docker)."""
    total = 0
    if output:
        with open(output, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                total += len(chunk)
        return total
    try:
        is_tty = os.isatty(ctx.stdout.fileno())
    except (AttributeError, ValueError, OSError):
        is_tty = False
    if is_tty:
        raise CommandError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    for chunk in chunks:
        ctx.out_bytes(chunk)
        total += len(chunk)
    return total


def cmd_save(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS] IMAGE [IMAGE...]", "Save one or more images to a tar archive (streamed to STDOUT by default)")
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("--platform", help="Save only the given platform variant")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    ns = p.parse(argv)
    params: dict[str, Any] = {"names": ns.images}
    if ns.platform:
        params["platform"] = ns.platform
    if not ns.output:
        write_stream(ctx, [], None)  # refuse a terminal before asking the daemon for work
    write_stream(ctx, ctx.client.stream_raw("GET", "/images/get", params=params), ns.output)
    return 0


def cmd_load(ctx: Context, argv: list[str]) -> int:
    p = ctx.parser("[OPTIONS]", "Load an image from a tar archive or STDIN")
    p.add_argument("-i", "--input", help="Read from tar archive file, instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")
    p.add_argument("--platform", help="Load only the given platform variant")
    ns = p.parse(argv)
    data = _open_input(ctx, ns.input)
    if ns.input is None:
        try:
            if os.isatty(data.fileno()):
                raise CommandError("requested load from stdin, but stdin is empty")
        except (AttributeError, ValueError, OSError):
            pass
    params: dict[str, Any] = {"quiet": int(ns.quiet)}
    if ns.platform:
        params["platform"] = ns.platform
    resp = ctx.client.send_file("POST", "/images/load", data, params=params,
                                headers={"Content-Type": "application/x-tar"})
    stream = ctx.client.stream_json("POST", "/images/load", response=resp)
    _print_json_stream(ctx, stream)
    return 0


def cmd_prune(ctx: Context, argv: list[str]) -> int:
    from conch.cli.verb_common import confirm, filters_json

    p = ctx.parser("[OPTIONS]", "Remove unused images")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images, not just dangling ones")
    p.add_argument("--filter", action="append", default=[], help='Provide filter values (e.g. "until=<timestamp>")')
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    ns = p.parse(argv)
    warning = ("WARNING! This will remove all images without at least one container associated to them."
               if ns.all else "WARNING! This will remove all dangling images.")
    if not ns.force and not confirm(ctx, warning):
        return 0
    filters = list(ns.filter) + [f"dangling={'false' if ns.all else 'true'}"]
    report = ctx.client.post("/images/prune", filters=filters_json(filters)) or {}
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        ctx.out("Deleted Images:")
        for item in deleted:
            if item.get("Untagged"):
                ctx.out(f"untagged: {item['Untagged']}")
            if item.get("Deleted"):
                ctx.out(f"deleted: {item['Deleted']}")
        ctx.out()
    ctx.out(f"Total reclaimed space: {fmt.human_size(report.get('SpaceReclaimed') or 0)}")
    return 0
