#!/usr/bin/env python3
"""Writes a single-layer OCI image archive FROM scratch, for `ctr images import`.

No Docker daemon and no registry here, and buildah would pull a storage stack in for what is
one tar file: the layer is a tar of the given files, the config names user/entrypoint/env,
and the archive is an OCI image layout (oci-layout, index.json, blobs/sha256/*) whose index
entry carries the image name in `io.containerd.image.name`, which `ctr images import` uses.

Usage: oci-image.py OUT.tar NAME:TAG --user U:G --entrypoint PATH [--env K=V]...
                    [--label K=V]... FILE=PATH_IN_IMAGE...
Each FILE=PATH copies FILE (following symlinks) to PATH in the image, mode kept, owner 0:0.
Parent directories are created 0755. The output is reproducible (fixed mtimes, sorted).
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

EPOCH = 0


def blob(store, data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    store[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def layer_tar(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        # The root first, so that the image's / is 0755 whatever umask made the snapshot.
        root = tarfile.TarInfo("./")
        root.type = tarfile.DIRTYPE
        root.mode = 0o755
        root.mtime = EPOCH
        tar.addfile(root)
        dirs = set()
        for _, dest in files:
            parts = dest.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = EPOCH
            tar.addfile(info)
        for src, dest in sorted(files, key=lambda f: f[1]):
            with open(src, "rb") as f:
                data = f.read()
            info = tarfile.TarInfo(dest.strip("/"))
            info.size = len(data)
            info.mode = os.stat(src).st_mode & 0o7777
            info.mtime = EPOCH
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("name")
    p.add_argument("--user", required=True)
    p.add_argument("--entrypoint", required=True)
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--label", action="append", default=[])
    p.add_argument("files", nargs="+")
    a = p.parse_args()

    files = []
    for spec in a.files:
        src, sep, dest = spec.partition("=")
        if not sep or not dest.startswith("/"):
            sys.exit(f"oci-image.py: expected FILE=/path/in/image, got {spec!r}")
        files.append((os.path.realpath(src), dest))

    raw = layer_tar(files)
    gz = gzip.compress(raw, compresslevel=6, mtime=EPOCH)
    store = {}
    layer = blob(store, gz, "application/vnd.oci.image.layer.v1.tar+gzip")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": a.user,
            "Entrypoint": [a.entrypoint],
            "Env": a.env,
            "Labels": dict(kv.split("=", 1) for kv in a.label),
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
        "history": [{"created_by": "scripts/lib/oci-image.py"}],
    }
    cfg = blob(store, json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": cfg,
        "layers": [layer],
    }
    man = blob(store, json.dumps(manifest, sort_keys=True).encode(), "application/vnd.oci.image.manifest.v1+json")
    man["annotations"] = {
        "io.containerd.image.name": a.name,
        "org.opencontainers.image.ref.name": a.name.rsplit(":", 1)[-1],
    }
    man["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [man]}

    tmp = a.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = EPOCH
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index, sort_keys=True).encode())
        for digest, data in sorted(store.items()):
            add("blobs/sha256/" + digest.split(":", 1)[1], data)
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
