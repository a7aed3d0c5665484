"""One schema: the filter, the roles' argument_specs, their defaults and the README say the same.

Changing a key, a default or a tag in one place without the others fails here.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if (path / "meta/argument_specs.yml").exists())

_SPEC = importlib.util.spec_from_file_location("scgi_apps_filter", ROOT / "plugins/filter/scgi_apps.py")
assert _SPEC and _SPEC.loader
scgi_apps_filter = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(scgi_apps_filter)


def readme_table(heading: str) -> dict[str, str]:
    """First column (without backticks) -> second column of the first table under HEADING."""
    section = README.split(f"\n{heading}\n", 1)[1]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]*) \|", section.split("\n#", 1)[0], flags=re.M)
    return {key: cell.strip() for key, cell in rows}


def spec_options(role: str) -> dict[str, Any]:
    specs = yaml.safe_load((ROOT / f"roles/{role}/meta/argument_specs.yml").read_text(encoding="utf-8"))
    return specs["argument_specs"]["main"]["options"]


def as_readme(value: Any) -> str:
    """How the README's default column writes a filter default."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{value}`" if not isinstance(value, (list, dict)) else f"`{value!r}`".replace("'", "")


def test_the_readme_schema_table_lists_the_filters_keys_with_its_defaults():
    table = readme_table("## The `scgi_apps` schema")
    assert set(table) == scgi_apps_filter.KNOWN_KEYS
    for key, default in scgi_apps_filter.DEFAULTS.items():
        assert table[key] == as_readme(default), key


def test_the_workers_argument_spec_of_scgi_apps_has_the_filters_keys_and_defaults():
    """The other roles refer to it (and to the README) rather than repeat it."""
    options = spec_options("scgi_worker")["scgi_apps"]["options"]
    assert set(options) == scgi_apps_filter.KNOWN_KEYS
    for key, default in scgi_apps_filter.DEFAULTS.items():
        if "default" in options[key] or default not in (None, "auto"):
            assert options[key].get("default") == default, key


@pytest.mark.parametrize("role", ROLES)
def test_each_roles_defaults_are_its_argument_specs_defaults(role):
    """As prometheus-community's collection checks: every variable in defaults/main.yml is documented
    with the same default, and every documented role variable with a default is in defaults/main.yml."""
    defaults = yaml.safe_load((ROOT / f"roles/{role}/defaults/main.yml").read_text(encoding="utf-8")) or {}
    options = {key: value for key, value in spec_options(role).items() if key != "scgi_apps"}
    assert set(defaults) == {key for key, value in options.items() if "default" in value or key in defaults}
    for key, value in defaults.items():
        if "default" in options[key]:
            assert options[key]["default"] == value, key


def test_the_readme_lists_every_tag_the_roles_give_their_stages():
    tags = {tag for role in ROLES
            for tag in re.findall(r"tags: \[(\w+)\]", (ROOT / f"roles/{role}/tasks/main.yml").read_text(encoding="utf-8"))
            if tag != "always"}
    assert set(readme_table("### Tags: one stage of a run")) == tags


# Every path of the host layout is spelled once, in the filter.
LAYOUT_PATHS = [
    scgi_apps_filter.HOME_ROOT,
    scgi_apps_filter.CONFIG_ROOT,
    scgi_apps_filter.DEPLOY_ROOT,
    scgi_apps_filter.SITE_PARTS_ROOT,
    "/run/scgi-",
]


def code_lines(path: Path) -> list[str]:
    """The lines of a role's file that do something: comments and documentation left out."""
    comment = "#" if path.suffix in {".yml", ".j2", ".py", ""} else None
    return [line for line in path.read_text(encoding="utf-8").splitlines()
            if not (comment and line.lstrip().startswith(comment))]


@pytest.mark.parametrize("role", ROLES)
def test_no_path_of_the_host_layout_is_spelled_outside_the_filter(role: str):
    """Tasks, templates, vars and helpers take the layout from the filter (per app, or scgi_path)."""
    files = [path for path in (ROOT / "roles" / role).rglob("*")
             if path.is_file() and not {"meta", "__pycache__"} & set(path.parts) and path.name != "README.md"]
    assert files
    spelled = [f"{path.relative_to(ROOT)}: {line.strip()}"
               for path in files for line in code_lines(path)
               if any(layout in line for layout in LAYOUT_PATHS)]
    assert spelled == []


def test_scgi_path_names_each_host_wide_path_and_refuses_others():
    assert scgi_apps_filter.scgi_path("config_root") == scgi_apps_filter.CONFIG_ROOT
    assert scgi_apps_filter.scgi_path("mod_scgi_dir") == f"{scgi_apps_filter.DEPLOY_ROOT}/mod_scgi"
    with pytest.raises(scgi_apps_filter.AnsibleFilterError, match="no host path named 'home'"):
        scgi_apps_filter.scgi_path("home")


def test_every_scenario_and_the_demo_run_their_containers_alike():
    """Molecule cannot merge a list of platforms from its base config: each scenario repeats the
    container options, and scripts/systemd-container (make demo) reads the default scenario's."""

    def container_options(platform: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in platform.items()
                if key not in {"name", "image", "groups", "networks", "docker_networks", "volumes"}}

    scenarios = {path.parent.name: yaml.safe_load(path.read_text(encoding="utf-8"))["platforms"]
                 for path in (ROOT / "molecule").glob("*/molecule.yml")}
    reference = scenarios["default"][0]
    assert {"capabilities", "cgroupns_mode", "volumes", "tmpfs", "command"} <= set(reference)
    for scenario, platforms in scenarios.items():
        for platform in platforms:
            assert container_options(platform) == container_options(reference), (scenario, platform["name"])
            # A scenario may mount more (a shared directory), never less.
            assert platform["volumes"][:len(reference["volumes"])] == reference["volumes"], (scenario, platform["name"])


# What readers are shown: each role's README is generated from its argument spec (scripts/role-docs),
# and ansible-doc shows every role and filter of the collection.

def test_the_role_readmes_are_what_scripts_role_docs_generates_from_the_argument_specs():
    result = subprocess.run([sys.executable, str(ROOT / "scripts/role-docs"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def ansible_doc(plugin_type: str, name: str) -> dict[str, Any]:
    """What `ansible-doc -t PLUGIN_TYPE --json pyhost.scgi.NAME` says, with the checkout as the collection."""
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    # python -m ansible runs the ansible-doc of the ansible-core these tests import, whatever PATH holds.
    result = subprocess.run([sys.executable, "-m", "ansible", "doc", "-t", plugin_type, "--json", f"pyhost.scgi.{name}"],
                            cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "[ERROR]" not in result.stderr, result.stderr
    return json.loads(result.stdout)[f"pyhost.scgi.{name}"]


def option_paths(options: dict[str, Any], prefix: str = "") -> set[str]:
    """Every option and suboption, as dotted paths (scgi_apps.source.path)."""
    paths = set()
    for name, spec in options.items():
        paths |= {prefix + name} | option_paths(spec.get("options") or {}, f"{prefix}{name}.")
    return paths


@pytest.mark.parametrize("role", ROLES)
def test_ansible_doc_shows_every_option_of_each_roles_main_entry_point(role: str):
    shown = ansible_doc("role", role)["entry_points"]["main"]["options"]
    assert option_paths(shown) == option_paths(spec_options(role))


FILTERS = scgi_apps_filter.FilterModule().filters()


def filter_options(name: str) -> set[str]:
    """What a filter takes: its input, then its keyword arguments."""
    return {"_input", *list(inspect.signature(FILTERS[name]).parameters)[1:]}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_each_filter_has_its_own_documentation_file_naming_what_it_takes(name: str):
    """ansible-doc reads a filter's docs from plugins/filter/NAME.yml (the .py holds several filters)."""
    docs = yaml.safe_load((ROOT / f"plugins/filter/{name}.yml").read_text(encoding="utf-8"))
    assert docs["DOCUMENTATION"]["name"] == name
    assert set(docs["DOCUMENTATION"]["options"]) == filter_options(name)
    assert "_value" in docs["RETURN"]
    yaml.safe_load(docs["EXAMPLES"])


def test_the_scgi_path_documentation_names_every_host_path():
    docs = yaml.safe_load((ROOT / "plugins/filter/scgi_path.yml").read_text(encoding="utf-8"))
    assert set(docs["DOCUMENTATION"]["options"]["_input"]["choices"]) == set(scgi_apps_filter.HOST_PATHS)


def test_ansible_doc_shows_the_scgi_apps_filter():
    docs = ansible_doc("filter", "scgi_apps")
    assert docs["doc"]["name"] == "scgi_apps"
    assert docs["doc"]["short_description"]
    assert "_input" in docs["doc"]["options"]
    assert set(docs["doc"]["options"]) <= filter_options("scgi_apps")
    assert "_value" in docs["return"]
