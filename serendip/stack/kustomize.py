"""A small kustomize renderer for the subset deploy/ uses, so manifests render without a kubectl
binary (CI validates them with kubernetes-validate; where `kubectl` exists a test checks that both
renderings agree).

Supported: ``resources`` (files and directories), ``namespace``, ``labels`` (metadata only),
``images``, ``configMapGenerator`` (literals, files, options.labels) with
``generatorOptions.disableNameSuffixHash: true``, and ``patches`` given as strategic-merge files
(lists of named objects merge by ``name``). Anything else is refused, not ignored.

``python -m serendip.stack.kustomize DIR`` prints the rendered YAML stream.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]
SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "images",
    "generatorOptions",
    "configMapGenerator",
    "patches",
}
CLUSTER_SCOPED = {
    "Namespace",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
    "CustomResourceDefinition",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
}


class KustomizeError(ValueError):
    pass


def _load_yaml_stream(path: Path) -> list[Resource]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _key(r: Resource) -> tuple[str, str]:
    return r.get("kind", ""), r.get("metadata", {}).get("name", "")


def merge_patch(base: Any, patch: Any) -> Any:
    """Strategic merge, the subset we need: maps merge, lists of maps with ``name`` merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge_patch(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(x, dict) and "name" in x for x in base + patch)
    ):
        out_list = [copy.deepcopy(x) for x in base]
        index = {x["name"]: i for i, x in enumerate(out_list)}
        for item in patch:
            if item["name"] in index:
                i = index[item["name"]]
                out_list[i] = merge_patch(out_list[i], item)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(patch)


def _set_images(node: Any, images: list[dict[str, str]]) -> None:
    if isinstance(node, dict):
        for field in ("containers", "initContainers"):
            for c in node.get(field) or []:
                if isinstance(c, dict) and isinstance(c.get("image"), str):
                    c["image"] = _new_image(c["image"], images)
        for v in node.values():
            _set_images(v, images)
    elif isinstance(node, list):
        for v in node:
            _set_images(v, images)


def _new_image(image: str, images: list[dict[str, str]]) -> str:
    name, tag = image, ""
    if "@" in image:
        name, tag = image.split("@", 1)
        tag = "@" + tag
    elif ":" in image.rsplit("/", 1)[-1]:
        name, t = image.rsplit(":", 1)
        tag = ":" + t
    for rule in images:
        if rule["name"] == name:
            name = rule.get("newName", name)
            if "newTag" in rule:
                tag = ":" + str(rule["newTag"])
            if "digest" in rule:
                tag = "@" + rule["digest"]
    return name + tag


def _configmaps(kdir: Path, gens: list[dict[str, Any]]) -> list[Resource]:
    out = []
    for g in gens:
        data: dict[str, str] = {}
        for lit in g.get("literals", []):
            k, _, v = lit.partition("=")
            data[k] = v
        for f in g.get("files", []):
            key, _, rel = f.partition("=") if "=" in f else (Path(f).name, "", f)
            path = (kdir / rel).resolve()
            if kdir.resolve() not in path.parents:
                raise KustomizeError(f"{kdir}: file {rel} is outside the kustomization root")
            data[key] = path.read_text()
        unknown = set(g) - {"name", "literals", "files", "options"}
        if unknown:
            raise KustomizeError(f"{kdir}: configMapGenerator fields not supported: {sorted(unknown)}")
        meta: dict[str, Any] = {"name": g["name"]}
        labels = (g.get("options") or {}).get("labels")
        if labels:
            meta["labels"] = dict(labels)
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
    return out


def render(kdir: Path) -> list[Resource]:
    kdir = Path(kdir)
    kfile = kdir / "kustomization.yaml"
    if not kfile.is_file():
        raise KustomizeError(f"{kdir}: no kustomization.yaml")
    k = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(k) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{kfile}: fields not supported by this renderer: {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in k.get("resources", []):
        path = kdir / entry
        resources.extend(render(path) if path.is_dir() else _load_yaml_stream(path))
    if k.get("configMapGenerator"):
        if not (k.get("generatorOptions") or {}).get("disableNameSuffixHash"):
            raise KustomizeError(f"{kfile}: generators need generatorOptions.disableNameSuffixHash: true")
        resources.extend(_configmaps(kdir, k["configMapGenerator"]))
    for p in k.get("patches", []):
        if set(p) != {"path"}:
            raise KustomizeError(f"{kfile}: only file patches (path:) are supported, got {p}")
        for patch in _load_yaml_stream(kdir / p["path"]):
            matches = [i for i, r in enumerate(resources) if _key(r) == _key(patch)]
            if len(matches) != 1:
                raise KustomizeError(f"{kfile}: patch {p['path']} matches {len(matches)} resources")
            resources[matches[0]] = merge_patch(resources[matches[0]], patch)
    if k.get("images"):
        for r in resources:
            _set_images(r, k["images"])
    if k.get("namespace"):
        for r in resources:
            if r.get("kind") not in CLUSTER_SCOPED:
                r.setdefault("metadata", {})["namespace"] = k["namespace"]
    for spec in k.get("labels", []):
        if spec.get("includeSelectors") or spec.get("includeTemplates"):
            raise KustomizeError(f"{kfile}: labels with includeSelectors/includeTemplates not supported")
        for r in resources:
            r.setdefault("metadata", {}).setdefault("labels", {}).update(spec["pairs"])
    return resources


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m serendip.stack.kustomize DIR", file=sys.stderr)
        return 2
    print(yaml.safe_dump_all(render(Path(args[0])), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
