"""Views of the pyhost.scgi demo: small pages that report how they are served."""

import itertools
import os
import pwd
import socket
import threading
import time

from django.core.files.storage import default_storage
from django.http import HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt


def _release():
    """The content of release.txt at the top of the code, if any: tells deploys apart (bench/deploy-under-load)."""
    try:
        with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "release.txt")) as file:
            return file.read().strip()
    except FileNotFoundError:
        return None


RELEASE = _release()


def _process_user():
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def home(request):
    return render(
        request,
        "pages/home.html",
        {"user": _process_user(), "uid": os.geteuid(), "pid": os.getpid()},
    )


@csrf_exempt
def echo(request):
    return JsonResponse(
        {
            "method": request.method,
            "path": request.path,
            "path_info": request.path_info,
            "script_name": request.META.get("SCRIPT_NAME", ""),
            "query": {key: request.GET.get(key) for key in request.GET},
            "body": request.body.decode("utf-8", errors="replace"),
            "user": _process_user(),
            "uid": os.geteuid(),
            "pid": os.getpid(),
            # Which worker host served it (many hosts: the balancer's choice).
            "host": socket.gethostname(),
            # Whether the session (a login made on another worker, say) is valid here.
            "authenticated": request.user.is_authenticated,
            "release": RELEASE,
            # HTTPS as Django sees it: secure cookies, CSRF and absolute URLs rest on it.
            "secure": request.is_secure(),
            "absolute": request.build_absolute_uri(),
        }
    )


# Requests this process has served: shows when a worker process is replaced.
_served = itertools.count(1)


def ping(request):
    """The smallest page: what a benchmark measures."""
    return HttpResponse("pong", content_type="text/plain")


def sleep(request):
    """Hold the worker for ?seconds= (at most 5), then say who served it and when."""
    started = time.time()
    time.sleep(min(float(request.GET.get("seconds", "1")), 5.0))
    return JsonResponse(
        {
            "pid": os.getpid(),
            "thread": threading.get_ident(),
            "served": next(_served),
            "started": started,
            "ended": time.time(),
        }
    )


def words(request, word):
    return JsonResponse({"word": word, "path": request.path})


def go(request):
    return redirect("echo")


def form(request):
    if request.method == "POST":
        message = request.POST.get("message", "")
        return render(request, "pages/said.html", {"message": message})
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    return render(request, "pages/form.html")


@csrf_exempt
def upload(request):
    if request.method == "POST":
        uploaded = request.FILES.get("file")
        if uploaded is None:
            return JsonResponse({"error": "no file field named 'file'"}, status=400)
        name = os.path.basename(uploaded.name) or "upload"
        saved_name = default_storage.save("uploads/" + name, uploaded)
        return JsonResponse(
            {
                "name": saved_name,
                "url": default_storage.url(saved_name),
                "size": uploaded.size,
                "host": socket.gethostname(),
            }
        )
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    return render(request, "pages/upload.html")
