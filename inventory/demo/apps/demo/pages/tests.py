"""Tests of the demo pages, at the root and mounted under a sub-path."""

import io
import json
import tempfile
from wsgiref.util import setup_testing_defaults

from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client, TestCase, override_settings
from django.urls import set_script_prefix


def call_mounted(
    path_info, script_name="/blog", method="GET", body=b"", query="", content_type=""
):
    """Call the real WSGI handler as a server mounting the app at script_name would."""
    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": query,
        "HTTP_HOST": "localhost",
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": content_type,
        "wsgi.input": io.BytesIO(body),
    }
    setup_testing_defaults(environ)
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"] = int(status.split()[0])
        captured["headers"] = dict(headers)

    try:
        content = b"".join(WSGIHandler()(environ, start_response))
    finally:
        set_script_prefix("/")
    return captured["status"], captured["headers"], content


class RootMountTests(TestCase):
    def test_home(self):
        response = self.client.get("/")
        self.assertContains(response, "<title>pyhost.scgi demo</title>", html=False)
        self.assertContains(response, "demo/style.css")

    def test_echo_post(self):
        response = self.client.post(
            "/echo/?a=1&b=x", data=b"h\xc3\xa9llo", content_type="text/plain"
        )
        data = response.json()
        self.assertEqual(data["method"], "POST")
        self.assertEqual(data["path"], "/echo/")
        self.assertEqual(data["script_name"], "")
        self.assertEqual(data["query"], {"a": "1", "b": "x"})
        self.assertEqual(data["body"], "héllo")

    def test_words_non_ascii(self):
        data = self.client.get("/words/café/").json()
        self.assertEqual(data, {"word": "café", "path": "/words/café/"})

    def test_go_redirects_to_echo(self):
        response = self.client.get("/go/")
        self.assertEqual(response.status_code, 302)
        self.assertEqual(response["Location"], "/echo/")

    def test_form_requires_csrf(self):
        client = Client(enforce_csrf_checks=True)
        self.assertEqual(client.post("/form/", {"message": "hi"}).status_code, 403)
        client.get("/form/")
        token = client.cookies["csrftoken"].value
        response = client.post(
            "/form/", {"message": "<b>hi</b>", "csrfmiddlewaretoken": token}
        )
        self.assertContains(response, "You said: &lt;b&gt;hi&lt;/b&gt;")

    def test_upload(self):
        with tempfile.TemporaryDirectory() as media, override_settings(MEDIA_ROOT=media):
            client = Client(enforce_csrf_checks=True)
            upload = SimpleUploadedFile("note.txt", b"12345")
            data = client.post("/upload/", {"file": upload}).json()
        self.assertEqual(data["name"], "uploads/note.txt")
        self.assertEqual(data["url"], "/media/uploads/note.txt")
        self.assertEqual(data["size"], 5)


# Storages cache their base URL (with the script prefix) on first use: the
# override resets them, as a fresh worker process mounted at /blog would be.
@override_settings(STATIC_URL="static/", MEDIA_URL="media/")
class SubPathMountTests(TestCase):
    def test_echo(self):
        status, _headers, content = call_mounted("/echo/", query="q=1")
        data = json.loads(content)
        self.assertEqual(status, 200)
        self.assertEqual(data["path"], "/blog/echo/")
        self.assertEqual(data["path_info"], "/echo/")
        self.assertEqual(data["script_name"], "/blog")
        self.assertEqual(data["query"], {"q": "1"})

    def test_words_non_ascii(self):
        status, _headers, content = call_mounted("/words/café/")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(content)["path"], "/blog/words/café/")

    def test_go_keeps_prefix(self):
        status, headers, _content = call_mounted("/go/")
        self.assertEqual(status, 302)
        self.assertEqual(headers["Location"], "/blog/echo/")

    def test_home_links_keep_prefix(self):
        status, _headers, content = call_mounted("/")
        self.assertEqual(status, 200)
        self.assertIn(b'href="/blog/static/demo/style.css"', content)
        self.assertIn(b'href="/blog/echo/"', content)

    def test_upload_url_keeps_prefix(self):
        boundary = "XyZ"
        body = (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="n.txt"\r\n'
            "Content-Type: text/plain\r\n\r\n"
            f"abc\r\n--{boundary}--\r\n"
        ).encode()
        with tempfile.TemporaryDirectory() as media, override_settings(MEDIA_ROOT=media):
            status, _headers, content = call_mounted(
                "/upload/",
                method="POST",
                body=body,
                content_type=f"multipart/form-data; boundary={boundary}",
            )
        self.assertEqual(status, 200)
        data = json.loads(content)
        self.assertEqual(data["url"], "/blog/media/uploads/n.txt")
        self.assertEqual(data["size"], 3)
