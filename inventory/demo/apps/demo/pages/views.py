"""Views of the pyhost.scgi demo: small pages that report how they are served."""

import os
import pwd

from django.core.files.storage import default_storage
from django.http import HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt


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
            }
        )
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    return render(request, "pages/upload.html")
