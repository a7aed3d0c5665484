"""Notes: a small Flask app, written the way Flask's own tutorial writes one.

Nothing in it knows about pyhost.scgi: it reads its secret key from the
environment (FLASK_SECRET_KEY, Flask's own prefixed-environment convention),
builds every URL with url_for and keeps a visitor's notes in Flask's signed
session cookie. ``/sleep`` answers after a delay, with which process and thread
served it; the scenarios use it to see requests run at once.
"""

import os
import threading
import time

from flask import Flask, flash, jsonify, redirect, render_template, request, session, url_for

app = Flask(__name__)
app.config.from_prefixed_env()

# The content of release.txt beside this file, if any: the deploy tests tell releases apart by it.
_release_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "release.txt")
RELEASE = open(_release_file).read().strip() if os.path.exists(_release_file) else None


@app.get("/")
def index():
    return render_template("index.html", notes=session.get("notes", []))


@app.post("/notes")
def add_note():
    text = request.form.get("text", "").strip()
    if text:
        session["notes"] = [*session.get("notes", []), text]
        flash(f"Saved {len(text)} characters.")
    return redirect(url_for("index"))


@app.get("/sleep")
def sleep():
    started = time.time()
    time.sleep(float(request.args.get("seconds", "0")))
    return jsonify(pid=os.getpid(), thread=threading.get_ident(), started=started, ended=time.time(), release=RELEASE,
                   secure=request.is_secure, absolute=url_for("index", _external=True))
