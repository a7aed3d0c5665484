"""The scgi_apps filter: what operators see when an app is right, and when it is wrong."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

_SPEC = importlib.util.spec_from_file_location(
    "scgi_apps_filter",
    Path(__file__).resolve().parents[2] / "plugins" / "filter" / "scgi_apps.py",
)
scgi_apps_filter = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(scgi_apps_filter)
scgi_apps = scgi_apps_filter.scgi_apps


def app(**overrides: Any) -> dict[str, Any]:
    base = {
        "name": "blog",
        "server_name": "blog.example.org",
        "source": {"path": "apps/blog"},
        "wsgi": "blog.wsgi:application",
        "django": {"settings": "blog.settings"},
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def test_defaults_and_derived_values():
    (blog,) = scgi_apps([app()])
    assert blog["state"] == "present"
    assert blog["home"] == "/srv/scgi/blog"
    assert blog["service"] == "scgi-blog.service"
    assert blog["socket_unit"] == "scgi-blog.socket"
    assert (blog["code_dir"], blog["venv_dir"], blog["state_dir"]) == (
        "/srv/scgi/blog/code", "/srv/scgi/blog/venv", "/srv/scgi/blog/state")
    assert (blog["config_dir"], blog["deploy_dir"], blog["runtime_dir"]) == (
        "/etc/scgi/blog", "/var/lib/pyhost-scgi/blog", "/run/scgi-blog")
    assert blog["listen"] == {"kind": "unix", "address": "/run/scgi-blog/blog.sock"}
    assert blog["proxy_url"] == "unix:/run/scgi-blog/blog.sock|scgi://blog/"
    assert blog["script_name"] == ""
    assert blog["static"] == {
        "url": "/static/",
        "dir": "/srv/scgi/blog/static",
        "source": "",
    }
    assert blog["media"] == {
        "url": "/media/",
        "dir": "/srv/scgi/blog/media",
        "source": "",
        "shared": None,
    }
    assert blog["django"] == {
        "settings": "blog.settings",
        "migrate": True,
        "collectstatic": True,
        "debug": False,
        "secret_key": {"path": "/etc/scgi/blog/django-secret-key.env", "group": "blog"},
    }
    assert (blog["method"], blog["max_children"], blog["max_requests"]) == (
        "prefork",
        "auto",
        0,
    )


def test_sub_path_mount_and_tcp_listen():
    (blog,) = scgi_apps([app(mount="/blog/", listen="127.0.0.1:4000")])
    assert blog["script_name"] == "/blog"
    assert blog["static"]["url"] == "/blog/static/"
    assert blog["proxy_url"] == "scgi://127.0.0.1:4000/blog/"
    assert blog["listen"]["port"] == 4000


@pytest.mark.parametrize(
    ("protocol", "listen", "url"),
    [
        ("fcgi", "unix", "unix:/run/scgi-blog/blog.sock|fcgi://blog/blog/"),
        ("ajp", "127.0.0.1:8009", "ajp://127.0.0.1:8009/blog/"),
        ("scgi", "[::1]:4000", "scgi://[::1]:4000/blog/"),
    ],
)
def test_proxy_url_per_protocol(protocol, listen, url):
    (blog,) = scgi_apps([app(protocol=protocol, listen=listen, mount="/blog/")])
    assert blog["proxy_url"] == url


def test_ephemeral_port_gets_a_warning_that_says_why():
    (recipe,) = scgi_apps([app(listen="127.0.0.1:40000", apache_client="mod_scgi")])
    (warning,) = recipe["warnings"]
    assert (
        "app 'blog', field 'listen': port 40000 lies in Linux's ephemeral port range"
        in warning
    )
    assert "prefer a port below 32768" in warning
    (quiet,) = scgi_apps([app(listen="127.0.0.1:4000")])
    assert quiet["warnings"] == []


def test_warnings_are_shown_when_asked(capsys):
    scgi_apps([app(listen="127.0.0.1:40000")], warn=True)
    # ansible-core before 2.19 wraps warnings at the terminal's width.
    shown = " ".join(capsys.readouterr().err.split())
    assert "port 40000 lies in Linux's ephemeral port range" in shown


def test_secret_values_never_leave_the_filter():
    (blog,) = scgi_apps([app(secret_env={"API_TOKEN": "s3cr3t"})])
    assert "secret_env" not in blog
    assert blog["secret_env_keys"] == ["API_TOKEN"]
    assert "s3cr3t" not in repr(blog)


def test_absent_app_needs_only_its_name():
    (gone,) = scgi_apps([{"name": "old", "state": "absent"}])
    assert gone["service"] == "scgi-old.service"
    assert gone["keep_data"] is False
    assert gone["kept_in_home"] == []


def test_absent_app_with_keep_data_keeps_media_and_state():
    (gone,) = scgi_apps([{"name": "old", "state": "absent", "keep_data": True}])
    assert gone["kept_in_home"] == ["media", "state"]


def test_keep_data_keeps_a_media_dir_of_its_own():
    (gone,) = scgi_apps([{"name": "old", "state": "absent", "keep_data": True, "media": {"dir": "data/uploads"}}])
    assert gone["kept_in_home"] == ["data", "state"]


def test_a_shared_media_dir_is_never_removed_with_the_app():
    """It is the operator's filesystem, mounted there: other hosts of the app wrote what it holds."""
    (gone,) = scgi_apps([{"name": "old", "state": "absent", "media": {"shared": True}}])
    assert gone["kept_in_home"] == ["media"]
    (gone,) = scgi_apps([{"name": "old", "state": "absent", "keep_data": True, "media": {"shared": True}}])
    assert gone["kept_in_home"] == ["media", "state"]
    (blog,) = scgi_apps([app(listen=4000, media={"shared": False})], groups=CLUSTER)
    assert blog["kept_in_home"] == []


def test_keep_data_is_accepted_on_a_present_app():
    (blog,) = scgi_apps([app(keep_data=True)])
    assert blog["keep_data"] is True


def test_apps_under_one_host_name_share_its_site_deeper_mounts_first():
    shop, blog = scgi_apps([
        app(name="shop", server_name="WWW.Example.org", server_aliases=["example.org"], mount="/"),
        app(server_name="www.example.org", server_aliases=["Example.org"], mount="/blog/"),
    ])
    assert shop["server_name"] == blog["server_name"] == "www.example.org"
    assert shop["server_aliases"] == blog["server_aliases"] == ["example.org"]
    site = "scgi-site-www.example.org"
    assert shop["site"] == {
        "name": site,
        "vhost_path": f"/etc/apache2/sites-available/{site}.conf",
        "parts_dir": f"/etc/apache2/pyhost-scgi/{site}",
        "part": f"/etc/apache2/pyhost-scgi/{site}/998-scgi-shop.conf",
        "error_log": f"/var/log/apache2/{site}-error.log",
        "access_log": "/var/log/apache2/scgi-shop-access.log",
        "tls_file": f"/etc/apache2/pyhost-scgi-tls/{site}.pem",
        "self_signed": {"path": f"/etc/apache2/pyhost-scgi-tls/{site}.pem", "names": ["www.example.org", "example.org"]},
    }
    assert blog["site"]["name"] == shop["site"]["name"]
    # Apache includes the parts in name order and takes the first Alias/ProxyPass that matches.
    assert sorted([shop["site"]["part"], blog["site"]["part"]])[0] == blog["site"]["part"]


def test_source_on_the_controller_is_resolved_from_the_root(tmp_path):
    (tmp_path / "apps" / "blog").mkdir(parents=True)
    (tmp_path / "blog.tar.gz").write_bytes(b"")
    blog, shop = scgi_apps(
        [app(), app(name="shop", server_name="shop.example.org", source={"archive": str(tmp_path / "blog.tar.gz")})],
        source_root=str(tmp_path),
    )
    assert blog["source"] == {"kind": "path", "location": "apps/blog", "controller_path": str(tmp_path / "apps/blog")}
    assert shop["source"]["controller_path"] == str(tmp_path / "blog.tar.gz")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"path": "apps/missing"}, "app 'blog', field 'source.path': 'apps/missing' is not a readable directory on the "
                                   "controller (looked at {root}/apps/missing)"),
        ({"path": "file.txt"}, "app 'blog', field 'source.path': 'file.txt' is not a readable directory"),
        ({"archive": "dist/blog.tar.gz"}, "app 'blog', field 'source.archive': 'dist/blog.tar.gz' is not a readable "
                                          "file on the controller (looked at {root}/dist/blog.tar.gz)"),
        ({"archive": "apps"}, "app 'blog', field 'source.archive': 'apps' is not a readable file"),
    ],
)
def test_missing_source_on_the_controller_names_the_app_and_the_field(tmp_path, source, message):
    (tmp_path / "apps").mkdir()
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(AnsibleFilterError) as error:
        scgi_apps([app(source=source)], source_root=str(tmp_path))
    assert message.format(root=tmp_path) in str(error.value)


def test_request_limits_default_and_sizes():
    (blog,) = scgi_apps([app()])
    assert (blog["max_body"], blog["read_timeout"]) == (100 << 20, 60)
    (blog,) = scgi_apps([app(max_body="2G", read_timeout=300)])
    assert (blog["max_body"], blog["read_timeout"]) == (2 << 30, 300)
    (blog,) = scgi_apps([app(max_body=1024)])
    assert blog["max_body"] == 1024


def test_localhost_listens_on_an_address_systemd_accepts():
    (blog,) = scgi_apps([app(listen="localhost:4000")])
    assert blog["listen"] == {"kind": "tcp", "address": "127.0.0.1:4000", "host": "127.0.0.1", "port": 4000,
                              "port_only": False}
    assert blog["proxy_url"] == "scgi://127.0.0.1:4000/"


def test_plain_dirs_and_single_line_unit_settings_pass():
    (blog,) = scgi_apps([app(django=None, static={"dir": "static.v2", "source": "public/static"}, media={"dir": "uploads"},
                             unit_settings={"MemoryDenyWriteExecute": False, "IPAddressAllow": ["localhost", "10.0.0.5"],
                                            "LimitNOFILE": 4096}, packages=["requests>=2.31", "Django[argon2]==5.2"])])
    assert (blog["static"]["dir"], blog["media"]["dir"]) == ("/srv/scgi/blog/static.v2", "/srv/scgi/blog/uploads")
    assert blog["static"]["source"] == "public/static"


def test_sources_are_not_looked_up_without_a_root_nor_for_absent_apps(tmp_path):
    scgi_apps([app(source={"path": "nowhere"})])
    scgi_apps([{"name": "old", "state": "absent"}], source_root=str(tmp_path))


@pytest.mark.parametrize(
    ("apps", "message"),
    [
        ([app(name="Blog")], "app 'Blog', field 'name'"),
        (
            [app(server_aliases=["www.blog.example.org"]), app(name="shop", mount="/shop/")],
            "app 'shop', field 'server_aliases': apps under server_name blog.example.org share one site and its "
            "aliases: must be ['www.blog.example.org'] as for app 'blog', not []",
        ),
        (
            [app(server_aliases=["shop.example.org"]), app(name="shop", server_name="shop.example.org")],
            "app 'shop', field 'server_name': shop.example.org already belongs to the site blog.example.org of app "
            "'blog': to share it, use server_name blog.example.org",
        ),
        (
            [app(), app(name="shop", server_name="shop.example.org", server_aliases=["BLOG.example.org"])],
            "app 'shop', field 'server_aliases': blog.example.org already belongs to the site blog.example.org",
        ),
        ([app(server_name="*.example.org")], "field 'server_name': '*.example.org' must be a host name like "
                                             "blog.example.org (wildcards go in server_aliases)"),
        ([app(server_aliases="www.example.org")], "field 'server_aliases': must be a list of host names"),
        # Injection: a value that reaches a unit file or Apache's configuration must be one plain line.
        ([app(media={"dir": "media\nUser=root\nReadWritePaths=/."})], "app 'blog', field 'media.dir': 'media\\nUser=root"),
        ([app(static={"dir": "."})], "field 'static.dir': '.' must be plain names"),
        ([app(static={"dir": "code/."})], "field 'static.dir': 'code/.' must be plain names"),
        ([app(static={"dir": "venv/lib"})], "field 'static.dir': 'venv/lib' must be one directory name, directly in"),
        ([app(media={"dir": "state/uploads"})], "field 'media.dir': 'state/uploads' must be one directory name"),
        ([app(media={"dir": "state"})], "field 'media.dir': 'state' is a name the app's home already uses"),
        # Root writes releases/history: an app's media there would let it plant a link for root to follow.
        ([app(media={"dir": "releases"})], "field 'media.dir': 'releases' is a name the app's home already uses"),
        ([app(static={"dir": "venvs"})], "field 'static.dir': 'venvs' is a name the app's home already uses"),
        ([app(media={"dir": "current"})], "field 'media.dir': 'current' is a name the app's home already uses"),
        ([app(static={"dir": "files dir"})], "field 'static.dir': 'files dir' must be plain names"),
        ([app(static={"source": "public\nx"})], "field 'static.source'"),
        ([app(requirements="req.txt\n")], "field 'requirements'"),
        ([app(name="blog\n")], "field 'name'"),
        ([app(wsgi="blog.wsgi:application\n")], "field 'wsgi'"),
        ([app(server_name="blog.example.org\n")], "field 'server_name'"),
        ([app(server_aliases=["www.example.org\n"])], "field 'server_aliases'"),
        ([app(env={"KEY\n": "x"})], "field 'env'"),
        ([app(memory_max="512M\n")], "field 'memory_max'"),
        ([app(cpu_quota="50%\n")], "field 'cpu_quota'"),
        ([app(django={"settings": "blog.settings\n"})], "field 'django.settings'"),
        ([app(mount="/blog/\n")], "field 'mount'"),
        ([app(listen="127.0.0.1:4000\n")], "field 'listen'"),
        ([app(packages=["-e git+https://example.org/x"])], "field 'packages': '-e git+https://example.org/x' must be one pip requirement"),
        ([app(packages=["--index-url=https://evil.example"])], "field 'packages'"),
        ([app(packages=["requests\n--extra-index-url=https://evil.example"])], "field 'packages'"),
        ([app(packages=[""])], "field 'packages'"),
        ([app(packages="requests")], "field 'packages': must be a list"),
        ([app(unit_settings={"User=root\nX": "y"})], "field 'unit_settings': 'User=root\\nX' is not a systemd directive"),
        ([app(unit_settings={"MemoryMax": "1G\nUser=root"})], "field 'unit_settings.MemoryMax': '1G\\nUser=root' must be a single-line"),
        ([app(unit_settings={"IPAddressAllow": ["localhost", "10.0.0.5\nUser=root"]})], "field 'unit_settings.IPAddressAllow'"),
        ([app(max_body="3G")], "field 'max_body': '3G' must be a size from 1 byte to 2G, like 100M"),
        ([app(max_body="lots")], "field 'max_body'"),
        ([app(max_body=0)], "field 'max_body'"),
        ([app(read_timeout=0)], "field 'read_timeout': 0 must be a whole number of seconds from 1 to 3600"),
        # Milliseconds for seconds: never "forever".
        ([app(read_timeout=60000)], "field 'read_timeout': 60000 must be a whole number of seconds from 1 to 3600"),
        ([app(drain_timeout=30000)], "field 'drain_timeout': 30000 must be a whole number of seconds from 0 to 3600"),
        ([app(tls={"certificate": "acme", "hsts": 10 ** 12})], "field 'tls.hsts': 1000000000000 must be a whole number of seconds"),
        # URL paths in normal form only: Apache would never match another spelling.
        ([app(mount="/blog/../")], "field 'mount': '/blog/../' must be in normal form"),
        ([app(static={"url": "/./static/"})], "field 'static.url': '/./static/' must be in normal form"),
        ([app(media={"url": "//media/"})], "field 'media.url': '//media/' must be a URL path"),
        # A static or media URL over a mount: Apache would serve files there, never the app.
        ([app(mount="/blog/", static={"url": "/blog/"})], "field 'static.url': /blog/ would hide its own mount (/blog/)"),
        ([app(mount="/blog/", media={"url": "/"})], "field 'media.url': / would hide its own mount (/blog/)"),
        ([app(), app(name="shop", mount="/shop/", static={"url": "/shop/"})],
         "app 'shop', field 'static.url': /shop/ would hide its own mount"),
        ([app(static={"url": "/shop/"}), app(name="shop", mount="/shop/")],
         "app 'blog', field 'static.url': /shop/ would hide the mount of app 'shop' (/shop/) on blog.example.org"),
        ([app(), app(name="shop", mount="/shop/", static={"url": "/static/"})],
         "app 'shop', field 'static.url': /static/ on blog.example.org is already served by app 'blog'"),
        # Booleans are not numbers, and strings are not booleans.
        ([app(max_children=True)], "field 'max_children': True must be 'auto' or a whole number"),
        ([app(max_requests=False)], "field 'max_requests': False must be a whole number >= 0"),
        ([app(tasks_max=True)], "field 'tasks_max': True must be a whole number >= 1"),
        ([app(django={"settings": "blog.settings", "migrate": "false"})], "field 'django.migrate': 'false' must be true or false"),
        ([app(django={"settings": "blog.settings", "debug": 1})], "field 'django.debug': 1 must be true or false"),
        ([app(name="root")], "app 'root', field 'name': is a system account"),
        # The apache role builds mod_scgi in /var/lib/pyhost-scgi/mod_scgi: that app's absent would delete it.
        ([app(name="mod_scgi")], "app 'mod_scgi', field 'name': is taken by the collection itself "
                                 "(/var/lib/pyhost-scgi/mod_scgi)"),
        ([app(), app()], "app 'blog', field 'name': is defined twice"),
        (
            [app(), app(name="shop")],
            "app 'shop', field 'server_name+mount': blog.example.org/ is already used by app 'blog'",
        ),
        (
            [
                app(listen="127.0.0.1:4000"),
                app(
                    name="shop", server_name="shop.example.org", listen="127.0.0.1:4000"
                ),
            ],
            "app 'shop', field 'listen': port 4000 is already used by app 'blog'",
        ),
        ([app(source=None)], "app 'blog', field 'source': is required"),
        (
            [app(source={"path": "a", "archive": "b.tar"})],
            "field 'source': needs exactly one of",
        ),
        (
            [app(source={"git": {"repo": "--upload-pack=touch /tmp/x"}})],
            "app 'blog', field 'source.git.repo': '--upload-pack=touch /tmp/x' must be an https://",
        ),
        (
            [app(source={"git": {"repo": "ext::sh -c touch% /tmp/x"}})],
            "field 'source.git.repo'",
        ),
        (
            [app(source={"git": {"repo": "https://deploy:s3cret@git.example.org/blog.git"}})],
            "field 'source.git.repo': must not carry a password or token",
        ),
        (
            [app(source={"git": {"repo": "https://git.example.org/blog.git", "version": "--output=/x"}})],
            "field 'source.git.version': '--output=/x' must be a branch, a tag or a commit",
        ),
        (
            [app(source={"git": {"repo": "https://git.example.org/blog.git", "version": "main@{1}"}})],
            "field 'source.git.version'",
        ),
        (
            [app(source={"git": {"repo": "https://git.example.org/blog.git", "branch": "main"}})],
            "field 'source.git': must be a mapping with 'repo' and 'version'",
        ),
        ([app(tls={"certificate": "letsencrypt"})], "app 'blog', field 'tls.certificate': 'letsencrypt' must be one of"),
        ([app(tls={"certificate": "files"})], "field 'tls.cert': is required with certificate: files"),
        ([app(tls={"certificate": "self_signed", "key": "k.pem"})], "field 'tls.key': is for certificate: files"),
        ([app(tls={"certificate": "acme", "hsts": -1})], "field 'tls.hsts': -1 must be a whole number of seconds from 0"),
        ([app(tls={"certificate": "acme", "redirect": "yes"})], "field 'tls.redirect': 'yes' must be true or false"),
        ([app(tls={"certificate": "acme", "ocsp": True})], "field 'tls.ocsp': is not a known field"),
        ([app(tls="on")], "field 'tls': must be a mapping"),
        (
            [app(tls={"certificate": "acme"}),
             app(name="shop", mount="/shop/", tls={"certificate": "self_signed"})],
            "app 'shop', field 'tls': apps under server_name blog.example.org share one site and its TLS settings",
        ),
        ([app(wsgi="blog.wsgi")], "app 'blog', field 'wsgi'"),
        ([app(protocol="http")], "app 'blog', field 'protocol'"),
        ([app(method="forking")], "app 'blog', field 'method'"),
        ([app(max_children=0)], "field 'max_children'"),
        ([app(concurrency=-1)], "field 'concurrency': -1 must be 'auto' or a whole number from 0 (no limit) to 10000"),
        ([app(concurrency="8")], "field 'concurrency': '8' must be 'auto'"),
        ([app(concurrency=True)], "field 'concurrency': True must be 'auto'"),
        ([app(concurrency=10001)], "field 'concurrency': 10001 must be"),
        ([app(max_requests=-1)], "field 'max_requests'"),
        (
            [app(listen="0.0.0.0:4000")],
            "field 'listen': '0.0.0.0:4000' must be 'unix', a port like 4000 or a loopback",
        ),
        ([app(listen="127.0.0.1:80")], "field 'listen': port 80"),
        ([app(mount="blog")], "field 'mount'"),
        (
            [app(static={"dir": "../etc"})],
            "field 'static.dir': '../etc' must stay inside",
        ),
        ([app(media={"dir": "/var/www"})], "field 'media.dir'"),
        (
            [app(static={"dir": "code"})],
            "field 'static.dir': 'code' is a name the app's home already uses",
        ),
        ([app(env={"BAD-NAME": "x"})], "field 'env': 'BAD-NAME'"),
        (
            [app(secret_env={"TOKEN": "a\nb"})],
            "field 'secret_env.TOKEN': must be a single line",
        ),
        ([app(django={"settings": ""})], "field 'django.settings'"),
        ([app(server_name="not a host")], "field 'server_name'"),
        ([app(colour="blue")], "app 'blog', field 'colour': is not a known field"),
        (
            [app(apache_client="mod_scgi")],
            "field 'listen': mod_scgi connects over TCP only",
        ),
        (
            [app(apache_client="mod_scgi", protocol="fcgi", listen="127.0.0.1:4000")],
            "field 'apache_client': mod_scgi speaks SCGI only, not protocol 'fcgi'",
        ),
        ([app(apache_client="scgimount")], "field 'apache_client'"),
        ([app(memory_max="lots")], "field 'memory_max'"),
        ([app(cpu_quota="0.5")], "field 'cpu_quota'"),
        ([app(tasks_max=0)], "field 'tasks_max'"),
        ([app(keep_data="yes")], "app 'blog', field 'keep_data': 'yes' must be true or false"),
        (
            [{"name": "old", "state": "absent", "keep_data": 1}],
            "app 'old', field 'keep_data': 1 must be true or false",
        ),
        (
            [{"name": "old", "state": "absent", "keep_data": True, "media": {"dir": "../x"}}],
            "app 'old', field 'media.dir': '../x' must stay inside",
        ),
    ],
)
def test_mistakes_name_the_app_and_the_field(apps, message):
    with pytest.raises(AnsibleFilterError) as error:
        scgi_apps(apps)
    assert message in str(error.value)


def test_budgets_are_twice_what_the_workers_serve_unless_set():
    groups = {"scgi_workers": ["w1", "w2"], "scgi_frontends": ["fe"]}
    apps = scgi_apps([app(name="fixed", max_children=3, listen=4001, media={"shared": False}),
                      app(name="cores", server_name="cores.example.org", listen=4002, media={"shared": False}),
                      app(name="mine", server_name="mine.example.org", concurrency=5, listen=4003,
                          media={"shared": False}),
                      app(name="free", server_name="free.example.org", concurrency=0, listen=4004,
                          media={"shared": False}),
                      {"name": "gone", "state": "absent"}], groups=groups)
    # fixed: 3 on each of two workers; cores: auto = CPUs + 2 on each (w2 unknown: 1 CPU).
    assert scgi_apps_filter.scgi_budgets(apps, {"w1": 4}) == {"fixed": 12, "cores": 2 * (6 + 3), "mine": 5}


def test_a_budget_on_one_host_without_groups_and_behind_mod_scgi_too():
    apps = scgi_apps([app(max_children=4), app(name="classic", server_name="classic.example.org", max_children=2,
                                               listen="127.0.0.1:4000", apache_client="mod_scgi")])
    assert scgi_apps_filter.scgi_budgets(apps, {}) == {"blog": 8, "classic": 4}


def test_scgi_not_loaded_names_the_apps_whose_launcher_answers_503():
    apps = scgi_apps([app(), app(name="shop", server_name="shop.example.org", wsgi="shop.wsgi:app")])
    show = ("Id=scgi-blog.service\nStatusText=serving blog.wsgi:application (prefork, max 4 processes)\n\n"
            "Id=scgi-shop.service\nStatusText=unavailable: the app failed to load (ImportError), attempt 1; x\n")
    assert scgi_apps_filter.scgi_not_loaded(show, apps) == {
        "shop": "App shop did not load its code (shop.wsgi:app): unavailable: the app failed to load (ImportError), "
                "attempt 1; x. The traceback is in `journalctl -u scgi-shop.service`.",
    }
    assert scgi_apps_filter.scgi_not_loaded("", apps) == {}
    # The status text carries the app's own exception message: no escape sequence of it reaches the terminal.
    hostile = show.replace("(ImportError)", "(\x1b]52;c;ZWNobyBwd25lZA==\x07ImportError\x1b[2K)")
    assert "\x1b" not in scgi_apps_filter.scgi_not_loaded(hostile, apps)["shop"]


def test_scgi_failures_names_each_app_and_step_and_strips_what_apps_printed_of_control_characters():
    message = scgi_apps_filter.scgi_failures(
        {"blog": "its git source could not be fetched", "shop": "pip could not install its packages"},
        ["fatal: couldn't find remote ref gone", "",
         "app shop: pip failed:\n\x1b]52;c;cm0gLXJmIH4=\x07building \x1b[1A\x1b[2Kwheel\r\tdone \u202eexe.txt\x9b2J"],
        not_loaded={"ajp": "App ajp did not load its code (ajp:app): unavailable: x."})
    assert message == (
        "App blog: its git source could not be fetched. App shop: pip could not install its packages. "
        "App ajp did not load its code (ajp:app): unavailable: x. The other apps were deployed. "
        "fatal: couldn't find remote ref gone app shop: pip failed:\n]52;c;cm0gLXJmIH4=building [1A[2Kwheel\tdone exe.txt2J")
    assert scgi_apps_filter.scgi_failures({}, not_loaded={"a": "App a did not load."}) == (
        "App a did not load. The other apps were deployed.")


def test_scgi_units_reads_systemctl_show_blocks_by_id_in_any_property_order():
    show = ("ActiveState=active\nId=scgi-blog.socket\nUnitFileState=enabled\n\n"
            "Id=scgi-blog.service\nStatusText=unavailable: the app failed to load (ImportError), attempt 1; x=y\n"
            "ActiveState=inactive\n")
    units = scgi_apps_filter.scgi_units(show)
    assert units == {
        "scgi-blog.socket": {"Id": "scgi-blog.socket", "ActiveState": "active", "UnitFileState": "enabled"},
        "scgi-blog.service": {"Id": "scgi-blog.service", "ActiveState": "inactive",
                              "StatusText": "unavailable: the app failed to load (ImportError), attempt 1; x=y"},
    }
    assert scgi_apps_filter.scgi_units("") == {}


# --- many hosts: where each app runs ------------------------------------------------------------

ONE_HOST = {"scgi_workers": ["web1"], "scgi_frontends": ["web1"]}
CLUSTER = {"scgi_workers": ["w1", "w2", "w3"], "scgi_frontends": ["fe1", "fe2"], "small": ["w3"], "db": ["pg"]}


def test_one_host_in_both_groups_stays_local_with_todays_defaults():
    (blog,) = scgi_apps([app()], groups=ONE_HOST)
    assert (blog["worker_hosts"], blog["remote"], blog["listen"]["kind"]) == (["web1"], False, "unix")
    (blog,) = scgi_apps([app(listen=4000)], groups=ONE_HOST)
    assert (blog["remote"], blog["listen"]["address"]) == (False, "127.0.0.1:4000")


@pytest.mark.parametrize(
    ("workers", "hosts"),
    [(None, ["w1", "w2", "w3"]), ("small", ["w3"]), (["w3", "w1"], ["w1", "w3"])],
    ids=["every worker", "a group", "a list, in the inventory's order"],
)
def test_an_app_runs_on_every_worker_or_the_ones_it_names(workers, hosts):
    (blog,) = scgi_apps([app(listen=4000, workers=workers, media={"shared": True}, uid=2001)], groups=CLUSTER)
    assert (blog["worker_hosts"], blog["remote"], blog["listen"]["port"]) == (hosts, True, 4000)
    assert (blog["proxy_url"], blog["proxy_section"]) == ("balancer://scgi-blog/", "balancer://scgi-blog")


@pytest.mark.parametrize(
    ("overrides", "groups", "message"),
    [
        ({"listen": 4000}, CLUSTER, "field 'media.shared': the app runs on w1, w2, w3 for the front ends fe1, fe2: "
                                    "declare whether /srv/scgi/blog/media is one filesystem"),
        ({"listen": 4000, "media": {"shared": "yes"}}, CLUSTER, "field 'media.shared': 'yes' must be true or false"),
        ({"listen": 4000, "media": {"shared": True}}, CLUSTER,
         "field 'uid': the app writes its shared /srv/scgi/blog/media from w1, w2, w3: its user must have the same id"),
        ({"listen": 4000, "media": {"shared": True}, "uid": 0}, CLUSTER, "field 'uid': 0 must be a whole number from 100"),
        ({"listen": 4000, "media": {"shared": True}, "uid": 65534}, CLUSTER, "field 'uid': 65534 must be a whole"),
        ({"listen": 4000, "media": {"shared": True}, "uid": True}, CLUSTER, "field 'uid': True must be a whole"),
        ({"listen": 4000, "workers": "nosuchgroup"}, CLUSTER, "field 'workers': there is no inventory group 'nosuchgroup'"),
        ({"listen": 4000, "workers": "db"}, CLUSTER, "field 'workers': pg is not in the group scgi_workers"),
        ({"listen": 4000, "workers": ["w1", "fe1"]}, CLUSTER, "field 'workers': fe1 is not in the group scgi_workers"),
        ({"listen": 4000, "workers": []}, CLUSTER, "field 'workers': must be an inventory group's name or a non-empty"),
        ({"listen": 4000, "workers": ["w1", "w1"]}, CLUSTER, "field 'workers': names a host twice"),
        ({"listen": 4000, "workers": "a b"}, CLUSTER, "field 'workers': 'a b' must be an inventory group's name"),
        ({"listen": 4000, "workers": ["w1\nx"]}, CLUSTER, "field 'workers': 'w1\\nx' is not an inventory host name"),
        ({}, CLUSTER, "field 'listen': the app runs on w1, w2, w3 for the front ends fe1, fe2: it must listen on a port"),
        ({"listen": "127.0.0.1:4000"}, CLUSTER, "field 'listen': the app runs on w1, w2, w3"),
        ({"workers": ["w1"]}, {"scgi_workers": ["w1"], "scgi_frontends": ["w1", "fe2"]}, "it must listen on a port"),
        ({"listen": True}, CLUSTER, "field 'listen': True must be 'unix', a port"),
        ({"listen": 4000, "apache_client": "mod_scgi", "media": {"shared": False}}, CLUSTER,
         "field 'apache_client': mod_scgi cannot balance"),
    ],
)
def test_placement_mistakes_name_the_app_and_the_field(overrides, groups, message):
    with pytest.raises(AnsibleFilterError) as error:
        scgi_apps([app(**overrides)], groups=groups)
    assert message in str(error.value)


def test_one_worker_with_shared_media_needs_no_uid_and_a_uid_from_the_command_line_is_a_number():
    (blog,) = scgi_apps([app(listen=4000, workers=["w1"], media={"shared": True})], groups=CLUSTER)
    assert blog["uid"] is None
    (blog,) = scgi_apps([app(uid="2001")], groups=ONE_HOST)
    assert blog["uid"] == 2001


def test_two_apps_cannot_share_a_uid():
    with pytest.raises(AnsibleFilterError, match="app 'shop', field 'uid': 2001 is already used by app 'blog'"):
        scgi_apps([app(uid=2001), app(name="shop", server_name="shop.example.org", uid=2001)])


def test_with_addresses_each_remote_app_gets_its_members_in_worker_order():
    addresses = {"w1": "10.0.0.21", "w2": "fd00::22", "w3": "10.0.0.23", "fe1": "10.0.0.11", "fe2": "10.0.0.12"}
    (blog,) = scgi_apps([app(listen=4000, workers=["w2", "w1"], media={"shared": False})], groups=CLUSTER,
                        addresses=addresses)
    assert blog["members"] == [
        {"host": "w1", "address": "10.0.0.21", "port": 4000, "url_host": "10.0.0.21"},
        {"host": "w2", "address": "fd00::22", "port": 4000, "url_host": "[fd00::22]"},
    ]
    (local,) = scgi_apps([app()], groups=ONE_HOST, addresses={"pyhost": "10.0.0.1"})
    assert "members" not in local
    (placed,) = scgi_apps([app(listen=4000, media={"shared": False})], groups=CLUSTER)
    assert "members" not in placed


@pytest.mark.parametrize("address", ["", "10.0.0.300", "10.0.0.1\nInclude /tmp/x", "host.example.org"])
def test_a_worker_without_an_ip_address_is_refused_naming_the_app_and_host(address):
    with pytest.raises(AnsibleFilterError, match=r"app 'blog' runs on w2, whose private address .* is unknown or not an IP"):
        scgi_apps([app(listen=4000, media={"shared": False})], groups=CLUSTER,
                  addresses={"w1": "10.0.0.21", "w2": address})


def test_absent_apps_are_not_placed():
    (gone,) = scgi_apps([{"name": "blog", "state": "absent"}], groups=CLUSTER)
    assert "worker_hosts" not in gone


def test_tls_defaults_redirect_without_hsts_and_files_are_read_from_the_inventory(tmp_path):
    (blog,) = scgi_apps([app(tls={"certificate": "self_signed"})])
    assert blog["tls"] == {"certificate": "self_signed", "redirect": True, "hsts": 0, "hsts_subdomains": False}
    assert scgi_apps([app()])[0]["tls"] is None
    (tmp_path / "apps" / "blog").mkdir(parents=True)
    key_pair(tmp_path, "blog")
    (blog,) = scgi_apps([app(tls={"certificate": "files", "cert": "blog.crt", "key": "blog.key", "hsts": 63072000})],
                        source_root=str(tmp_path))
    assert (blog["tls"]["cert"], blog["tls"]["key"], blog["tls"]["hsts"]) == (
        f"{tmp_path}/blog.crt", f"{tmp_path}/blog.key", 63072000)
    with pytest.raises(AnsibleFilterError, match="app 'blog', field 'tls.key': 'nokey' is not a readable file"):
        scgi_apps([app(tls={"certificate": "files", "cert": "blog.crt", "key": "nokey"})], source_root=str(tmp_path))


def key_pair(directory: Path, name: str) -> None:
    """A self-signed certificate NAME.crt and its key NAME.key in DIRECTORY."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", f"/CN={name}", "-keyout", str(directory / f"{name}.key"),
                    "-out", str(directory / f"{name}.crt")], check=True, capture_output=True)


def test_tls_files_must_be_a_certificate_and_its_key_before_any_host_changes(tmp_path):
    (tmp_path / "apps" / "blog").mkdir(parents=True)
    key_pair(tmp_path, "blog")
    key_pair(tmp_path, "shop")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    (tmp_path / "encrypted.key").write_bytes(subprocess.run(
        ["openssl", "pkey", "-in", str(tmp_path / "blog.key"), "-aes256", "-passout", "pass:secret"],
        check=True, capture_output=True).stdout)
    for cert, key, message in (
        ("blog.crt", "shop.key", f"field 'tls.key': {tmp_path}/shop.key is not the key of the certificate {tmp_path}/blog.crt"),
        ("junk.pem", "blog.key", f"field 'tls.cert': {tmp_path}/junk.pem and {tmp_path}/blog.key do not load"),
        ("blog.crt", "encrypted.key", "field 'tls.cert': .* do not load as a PEM certificate chain and its unencrypted"),
    ):
        with pytest.raises(AnsibleFilterError, match=f"app 'blog', {message}"):
            scgi_apps([app(tls={"certificate": "files", "cert": cert, "key": key})], source_root=str(tmp_path))
    # Without source_root (a role that reads no file on the controller), nothing is loaded.
    (blog,) = scgi_apps([app(tls={"certificate": "files", "cert": "junk.pem", "key": "shop.key"})])
    assert (blog["tls"]["cert"], blog["tls"]["key"]) == ("junk.pem", "shop.key")


def test_git_source_takes_urls_and_repositories_on_the_controller(tmp_path):
    for repo in ("https://git.example.org/blog.git", "ssh://git@git.example.org/blog.git",
                 "git@github.com:example/blog.git", "file:///srv/git/blog.git"):
        (blog,) = scgi_apps([app(source={"git": {"repo": repo, "version": "v1.2"}})], source_root=str(tmp_path))
        assert blog["source"] == {"kind": "git", "location": repo, "repo": repo, "version": "v1.2"}
    (tmp_path / "blog.git").mkdir()
    (blog,) = scgi_apps([app(source={"git": {"repo": "blog.git"}})], source_root=str(tmp_path))
    assert (blog["source"]["repo"], blog["source"]["version"]) == (f"{tmp_path}/blog.git", "HEAD")
    with pytest.raises(AnsibleFilterError, match="field 'source.git': 'nowhere.git' is not a readable directory"):
        scgi_apps([app(source={"git": {"repo": "nowhere.git"}})], source_root=str(tmp_path))
