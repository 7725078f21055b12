"""Xandr emulation for the local partner sandbox: login, the Instant Audience Service, the Batch Segment Service and
the member / segment reads used by the connection test.

Paths are `/<real host><real path>` (see `PartnerClient.url`):

- `POST /api.appnexus.com/auth` `{"auth": {"username", "password"}}` -> `{"response": {"status": "OK", "token"}}`.
  A password starting with "wrong" gets NOAUTH, a username starting with "disabled" NOAUTH_DISABLED, one starting
  with "expired" NOAUTH_EXPIRED. At most 10 successful logins per user (and scope) per 5 minutes, then 429.
- Every other call needs a token this sandbox issued, as the raw `Authorization` header (or `?access_token=`), valid
  2 hours after its last use and 24 hours at most; anything else is NOAUTH (401).
- `POST /streaming-data.appnexus.com/rt-segment`: body under 1 MB, `rt_segment` list; each user a string
  `user_id` (with `domain` null: a Xandr user id, 1..2**64-1) and 1..100 `seg_block` entries (`seg_id`, or
  `seg_code` with `member_id`; `expiration` -1 or >= 0; `value` a 32-bit int). As at Xandr, problems are `warnings`
  in a status "OK" answer; users beyond 1,000 get "Too many user_ids in request.". Segment ids from 900000000 up and
  codes starting with "missing" do not exist.
- `GET /api.appnexus.com/member?id=` and `GET /api.appnexus.com/segment?id=|code=`: member ids from 9000000 up are
  someone else's (UNAUTH); unknown segments answer NOTFOUND (404).
- `POST /api.appnexus.com/batch-segment?member_id=` opens a job whose `upload_url` is
  `https://data-api-gslb.adnxs.net/segment-upload/<job_id>`; the file (`application/octet-stream`, Latin-1, lines
  `UID,SEG_ID:EXPIRATION;...`) is read at upload; `GET /api.appnexus.com/batch-segment?member_id=&job_id=` shows the
  job "processing" on the first read after the upload and "completed" (with the counters and error log) after that.

Errors use Xandr's envelope `{"response": {"error_id", "error", "error_description", "error_code"}}`; the upload host
answers `{"response": {"status": "ERROR", "error_code", "errors": [...]}}` like the Batch Segment Service.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
import weakref
from collections import deque
from typing import Any

from connectors.sandbox import Fault, Request, Response, json_response

NAME = "xandr"
API = "/api.appnexus.com"
STREAMING = "/streaming-data.appnexus.com"
UPLOAD_HOST = "data-api-gslb.adnxs.net"
UPLOAD_PREFIX = f"/{UPLOAD_HOST}/segment-upload/"

ROUTES = {
    ("POST", f"{API}/auth"): "auth",
    ("POST", f"{STREAMING}/rt-segment"): "rt_segment",
    ("GET", f"{API}/member"): "member",
    ("GET", f"{API}/segment"): "segment",
    ("POST", f"{API}/batch-segment"): "batch_open",
    ("GET", f"{API}/batch-segment"): "batch_status",
}
ENDPOINTS = (
    ("POST", f"{API}/auth", "Xandr login (token valid 2 h; 10 logins per 5 min)"),
    ("POST", f"{STREAMING}/rt-segment", "Xandr Instant Audience Service (add / remove users in segments)"),
    ("GET", f"{API}/member?id=", "Xandr member (test connection)"),
    ("GET", f"{API}/segment?id=|code=", "Xandr segment (test connection)"),
    ("POST", f"{API}/batch-segment?member_id=", "Xandr Batch Segment Service: open a job"),
    ("POST", f"{UPLOAD_PREFIX}<job_id>", "Xandr Batch Segment Service: upload the segment file"),
    ("GET", f"{API}/batch-segment?member_id=&job_id=", "Xandr Batch Segment Service: job status"),
)

MAX_USERS = 1_000
MAX_SEGMENTS_PER_USER = 100
MAX_BODY = 1_000_000
MAX_UID = 2**64 - 1
MAX_VALUE = 2_147_483_647
MAX_FILE = 500_000_000
MAX_FILE_SEGMENTS = 1_800
MAX_LOG_LINES = 200
UNKNOWN_SEGMENTS_FROM = 900_000_000
FOREIGN_MEMBERS_FROM = 9_000_000
DEFAULT_MEMBER = 1000
TOKEN_IDLE_SECONDS = 2 * 3600
TOKEN_MAX_SECONDS = 24 * 3600
LOGINS_PER_WINDOW = 10
LOGIN_WINDOW_SECONDS = 300
UPLOAD_URL_SECONDS = 300
DEVICE_DOMAINS = frozenset({"idfa", "sha1udid", "md5udid", "openudid", "aaid", "windowsadid", "rida"})
USER_FIELDS = frozenset({"user_id", "domain", "seg_block"})
SEG_FIELDS = frozenset({"seg_id", "seg_code", "value", "expiration", "member_id"})
NOT_LOGGED_IN = "Authentication failed - not logged in"
_counter = itertools.count(1)
_JOB_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_EXPIRATION = re.compile(r"-?\d{1,9}")


# World: tokens, logins and jobs, one per sandbox server -----------------------------------------------------------


class _World:
    def __init__(self):
        self.lock = threading.Lock()
        self.tokens: dict[str, list[float]] = {}  # token -> [issued, last used]
        self.logins: dict[tuple[str, str], deque] = {}
        self.jobs: dict[str, dict[str, Any]] = {}


_worlds: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_default_world = _World()
_worlds_lock = threading.Lock()


def _world(state: Any) -> _World:
    if state is None:
        return _default_world
    with _worlds_lock:
        world = _worlds.get(state)
        if world is None:
            world = _worlds[state] = _World()
        return world


# Routing -----------------------------------------------------------------------------------------------------------


def match(method: str, path: str):
    route = ROUTES.get((method, path))
    if route is not None:
        return (route, "")
    if method == "POST" and path.startswith(UPLOAD_PREFIX):
        job_id = path[len(UPLOAD_PREFIX) :]
        if job_id and "/" not in job_id:
            return ("batch_upload", job_id)
    return None


# Answers -----------------------------------------------------------------------------------------------------------


def _dbg() -> dict[str, Any]:
    return {"instance": "sandbox.xandr", "time": round(time.time(), 3), "version": "sandbox"}


def error(
    status: int,
    error_id: str,
    message: str,
    *,
    description: str | None = None,
    code: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Response:
    body = {
        "error_id": error_id,
        "error": message,
        "error_description": description,
        "error_code": code,
        "dbg_info": _dbg(),
    }
    return json_response(status, {"response": body}, headers=headers)


def upload_error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"response": {"status": "ERROR", "error_code": code, "errors": [message]}})


def ok(body: dict[str, Any], *, stats: dict[str, Any] | None = None, headers=()) -> Response:
    return json_response(200, {"response": {"status": "OK", **body, "dbg_info": _dbg()}}, stats=stats, headers=headers)


PARTNER_ERRORS = {
    401: ("NOAUTH", NOT_LOGGED_IN),
    403: ("UNAUTH", "You do not have permission to perform this action"),
    404: ("NOTFOUND", "Object not found"),
    409: ("INTEGRITY", "The request is inconsistent with existing objects"),
}


def fault_response(fault: Fault, request: Request) -> Response | None:
    kind = fault.kind
    route = (match(request.method, request.path) or ("", ""))[0]
    if kind == "slow":
        return None
    if kind == "expired_token":
        if route == "auth":  # an expired session does not stop a login
            return None
        return error(fault.status or 401, "NOAUTH", fault.message or NOT_LOGGED_IN)
    if kind == "rate_limit":
        wait = fault.retry_after if fault.retry_after is not None else 1
        return error(
            fault.status or 429,
            "SYSTEM",
            fault.message
            or "You have exceeded your request limit of 100 per 1 seconds for this member, please wait and try again "
            "or contact Xandr for higher limits",
            description="rate limit has been exceeded",
            code="RATE_EXCEEDED",
            headers=(("Retry-After", str(wait)),),
        )
    if kind == "server_error":
        return error(fault.status or 500, "SYSTEM", fault.message or "A system error has occurred")
    if kind == "partner_error":
        status = fault.status or 400
        error_id, message = PARTNER_ERRORS.get(status, ("SYNTAX", "The syntax of the request is incorrect"))
        return error(status, error_id, fault.message or message)
    if kind == "gone":  # the segment (or job) was deleted
        if route == "auth":
            return None
        if route == "rt_segment":
            return _rt_answer(request, gone=True)
        return error(fault.status or 404, "NOTFOUND", fault.message or "Object not found")
    return None


# Authentication ----------------------------------------------------------------------------------------------------


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _login(request: Request, world: _World) -> Response:
    body = _json_object(request.body)
    auth = body.get("auth") if body else None
    username = auth.get("username") if isinstance(auth, dict) else None
    password = auth.get("password") if isinstance(auth, dict) else None
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        return error(400, "SYNTAX", 'Send {"auth": {"username": "...", "password": "..."}} as JSON')
    if username.startswith("disabled"):
        return error(401, "NOAUTH_DISABLED", "This user account has been deactivated")
    if username.startswith("expired"):
        return error(401, "NOAUTH_EXPIRED", "This user's password has expired and needs to be reset")
    if password.startswith("wrong"):
        return error(401, "NOAUTH", "No match found for user/pass")
    now = time.time()
    with world.lock:
        recent = world.logins.setdefault((request.scope, username), deque())
        while recent and recent[0] <= now - LOGIN_WINDOW_SECONDS:
            recent.popleft()
        if len(recent) >= LOGINS_PER_WINDOW:
            wait = max(1, int(recent[0] + LOGIN_WINDOW_SECONDS - now) + 1)
            return error(
                429,
                "SYSTEM",
                "You have exceeded the limit of 10 authentications per 5 minutes for this user",
                description="rate limit has been exceeded",
                code="RATE_EXCEEDED",
                headers=(("Retry-After", str(wait)),),
            )
        recent.append(now)
        token = f"hbapi:{next(_counter)}:{secrets.token_hex(8)}:sandbox"
        world.tokens[token] = [now, now]
    return ok({"token": token}, stats={"logins": 1})


def _authenticated(request: Request, world: _World) -> bool:
    token = request.headers.get("authorization", "").strip() or request.query_params().get("access_token", "")
    now = time.time()
    with world.lock:
        times = world.tokens.get(token)
        if times is None:
            return False
        issued, used = times
        if now - used > TOKEN_IDLE_SECONDS or now - issued > TOKEN_MAX_SECONDS:
            del world.tokens[token]
            return False
        times[1] = now
    return True


def expire_tokens(state: Any = None) -> None:
    """Forget every issued token (tests: the sessions ran out)."""
    world = _world(state)
    with world.lock:
        world.tokens.clear()


# Instant Audience Service ------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return type(value) is int


def _uid_valid(user_id: str) -> bool:
    return user_id.isascii() and user_id.isdigit() and 0 < int(user_id) <= MAX_UID


def _segment_problem(seg: Any, gone: bool) -> str:
    if not isinstance(seg, dict):
        return "'seg_block' entries must be objects"
    unknown = sorted(set(seg) - SEG_FIELDS)
    if unknown:
        return f"Unknown field(s) in seg_block: {', '.join(unknown)}"
    seg_id, seg_code, member_id = seg.get("seg_id"), seg.get("seg_code"), seg.get("member_id")
    if seg_id is not None and seg_code is not None:
        return "Use 'seg_id', or 'seg_code' with 'member_id', not both"
    if member_id is not None and (not _is_int(member_id) or member_id <= 0):
        return "'member_id' must be a positive integer"
    if seg_id is not None:
        if not _is_int(seg_id) or seg_id <= 0:
            return "'seg_id' must be a positive integer"
    elif not isinstance(seg_code, str) or not seg_code or member_id is None:
        return "'seg_id' or 'seg_code' and 'member_id' are required"
    expiration = seg.get("expiration")
    if expiration is not None and (not _is_int(expiration) or expiration < -1):
        return "'expiration' must be -1 (remove), 0 (no expiry) or a number of minutes"
    value = seg.get("value")
    if value is not None and (not _is_int(value) or not 0 <= value <= MAX_VALUE):
        return "'value' must be an integer between 0 and 2147483647"
    if member_id is not None and member_id >= FOREIGN_MEMBERS_FROM:
        return f"Not authorized to populate segments of member {member_id}"
    if gone or (seg_id is not None and seg_id >= UNKNOWN_SEGMENTS_FROM) or str(seg_code or "").startswith("missing"):
        return f"Segment {seg_id if seg_id is not None else seg_code} does not exist or is not active"
    return ""


def _rt_answer(request: Request, *, gone: bool = False) -> Response:
    if len(request.body) > MAX_BODY:
        return error(413, "SYNTAX", "The JSON payload exceeds 1MB")
    body = _json_object(request.body)
    if body is None:
        return error(400, "SYNTAX", "The request body is not a JSON object")
    users = body.get("rt_segment")
    warnings: list[dict[str, Any]] = []
    valid_users = valid_segments = added = removed = invalid = 0
    if not isinstance(users, list) or not users:
        warnings.append({"message": "No valid rt_segment in request.", "entity": {"rt_segment": users or []}})
        return ok({"message": {"users_in_request": 0, "segments_in_request": 0}, "warnings": warnings})
    for position, user in enumerate(users):
        if position >= MAX_USERS:
            warnings.append({"message": "Too many user_ids in request.", "entity": user})
            invalid += 1
            continue
        if not isinstance(user, dict):
            warnings.append({"message": "'rt_segment' entries must be objects", "entity": user})
            invalid += 1
            continue
        problem = ""
        user_id, domain = user.get("user_id"), user.get("domain")
        unknown = sorted(set(user) - USER_FIELDS)
        if unknown:
            problem = f"Unknown field(s) in rt_segment entry: {', '.join(unknown)}"
        elif not isinstance(user_id, str) or not user_id:
            problem = "'user_id' is required and cannot be empty"
        elif domain is None and not _uid_valid(user_id):
            problem = f"Invalid Xandr user_id: {user_id}"
        elif domain is not None and domain not in DEVICE_DOMAINS:
            problem = f"Unknown domain: {domain}"
        elif not isinstance(user.get("seg_block"), list) or not user["seg_block"]:
            problem = "'seg_block' is required"
        if problem:
            warnings.append({"message": problem, "entity": user})
            invalid += 1
            continue
        blocks = user["seg_block"]
        for extra in blocks[MAX_SEGMENTS_PER_USER:]:
            warnings.append({"message": f"Too many segments for user_id: {user_id}.", "entity": extra})
        good = []
        for seg in blocks[:MAX_SEGMENTS_PER_USER]:
            reason = _segment_problem(seg, gone)
            if reason:
                warnings.append({"message": reason, "entity": seg})
            else:
                good.append(seg)
        if not good:
            warnings.append({"message": f"No valid segments for user_id: {user_id}.", "entity": user})
            invalid += 1
            continue
        valid_users += 1
        valid_segments += len(good)
        for seg in good:
            if seg.get("expiration") == -1:
                removed += 1
            else:
                added += 1
    if not valid_users:
        warnings.append({"message": "No valid rt_segment in request.", "entity": {"rt_segment": users[:MAX_USERS]}})
    stats = {"rows_added": added, "rows_removed": removed, "rows_invalid": invalid}
    answer = {"users_in_request": valid_users, "segments_in_request": valid_segments}
    return ok({"message": answer, "warnings": warnings}, stats=stats)


# Reads -------------------------------------------------------------------------------------------------------------


def _member(request: Request) -> Response:
    raw = request.query_params().get("id", "")
    if raw == "":
        member = {"id": DEFAULT_MEMBER, "name": f"Sandbox member {DEFAULT_MEMBER}", "active": True}
        return ok({"count": 1, "start_element": 0, "num_elements": 100, "members": [member]})
    if not raw.isdigit() or int(raw) <= 0:
        return error(400, "SYNTAX", "id must be a positive integer")
    member_id = int(raw)
    if member_id >= FOREIGN_MEMBERS_FROM:
        return error(403, "UNAUTH", f"You do not have access to member {member_id}")
    member = {"id": member_id, "name": f"Sandbox member {member_id}", "active": True}
    return ok({"count": 1, "start_element": 0, "num_elements": 100, "member": member})


def _segment(request: Request) -> Response:
    params = request.query_params()
    raw_id, code = params.get("id", ""), params.get("code", "")
    if not raw_id and not code:
        return ok({"count": 0, "start_element": 0, "num_elements": 100, "segments": []})
    if raw_id and (not raw_id.isdigit() or int(raw_id) <= 0):
        return error(400, "SYNTAX", "id must be a positive integer")
    seg_id = int(raw_id) if raw_id else 100_000 + sum(code.encode()) % 800_000
    if seg_id >= UNKNOWN_SEGMENTS_FROM or code.startswith("missing"):
        return error(404, "NOTFOUND", "segment not found")
    member = params.get("member_id", "")
    segment = {
        "id": seg_id,
        "code": code or None,
        "state": "active",
        "short_name": f"Sandbox segment {seg_id}",
        "member_id": int(member) if member.isdigit() else DEFAULT_MEMBER,
        "expire_minutes": None,
        "last_modified": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    return ok({"count": 1, "start_element": 0, "num_elements": 100, "segment": segment})


# Batch Segment Service ---------------------------------------------------------------------------------------------


def _now_text(ts: float | None = None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts if ts is not None else time.time()))


def _member_param(request: Request) -> tuple[int | None, Response | None]:
    raw = request.query_params().get("member_id", "")
    if not raw.isdigit() or int(raw) <= 0:
        return None, error(400, "SYNTAX", "member_id is required and must be a positive integer")
    member_id = int(raw)
    if member_id >= FOREIGN_MEMBERS_FROM:
        return None, error(403, "UNAUTH", f"You do not have access to member {member_id}")
    return member_id, None


def _batch_open(request: Request, world: _World) -> Response:
    member_id, problem = _member_param(request)
    if problem is not None:
        return problem
    job_id = "".join(secrets.choice(_JOB_CHARS) for _ in range(30)) + str(int(time.time()))
    number = next(_counter)
    now = time.time()
    job = {
        "id": number,
        "job_id": job_id,
        "member_id": member_id,
        "scope": request.scope,
        "phase": "starting",
        "created": now,
        "uploaded": None,
        "reads": 0,
        "result": None,
    }
    with world.lock:
        world.jobs[job_id] = job
    public = {
        "job_id": job_id,
        "id": number,
        "member_id": member_id,
        "last_modified": _now_text(now),
        "upload_url": f"https://{UPLOAD_HOST}/segment-upload/{job_id}",
    }
    return json_response(
        200,
        {
            "response": {
                "id": number,
                "status": "OK",
                "batch_segment_upload_job": public,
                "start_element": 0,
                "count": 1,
                "num_elements": 100,
                "dbg_info": _dbg(),
            }
        },
        stats={"jobs_opened": 1},
    )


def parse_segment_file(text: str) -> dict[str, Any]:
    """Counters, error log and row totals of a segment file in the sandbox member's configured format:
    separator1 ",", separator2 ";", separator3 ":", fields SEG_ID and EXPIRATION."""
    counts = dict.fromkeys(
        (
            "num_valid",
            "num_valid_user",
            "num_invalid_format",
            "num_invalid_user",
            "num_invalid_segment",
            "num_invalid_timestamp",
            "num_unauth_segment",
            "num_past_expiration",
            "num_inactive_segment",
            "num_other_error",
        ),
        0,
    )
    log: list[str] = []
    per_segment: dict[int, int] = {}
    seen: set[str] = set()
    bad_segments: set[int] = set()
    added = removed = 0
    for line in text.splitlines():
        line = line.rstrip("\r")
        if not line.strip():
            continue
        uid, sep, rest = line.partition(",")
        blocks = rest.split(";") if sep and rest else []
        parsed: list[tuple[int, int]] = []
        for block in blocks:
            seg, colon, expiration = block.partition(":")
            if not colon or not seg.isdigit() or not _EXPIRATION.fullmatch(expiration) or int(expiration) < -1:
                parsed = []
                break
            parsed.append((int(seg), int(expiration)))
        if line in seen or not parsed or len(blocks) > MAX_FILE_SEGMENTS:
            counts["num_invalid_format"] += 1
            log.append(f"num_invalid_format-{line}")
            continue
        seen.add(line)
        if not _uid_valid(uid):
            counts["num_invalid_user"] += 1
            log.append(f"num_invalid_user-{line}")
            continue
        counts["num_valid_user"] += 1
        logged = False
        for seg, expiration in parsed:
            if seg >= UNKNOWN_SEGMENTS_FROM:
                if seg not in bad_segments:
                    bad_segments.add(seg)
                    counts["num_invalid_segment"] += 1
                if not logged:
                    log.append(f"num_invalid_segment-{line}")
                    logged = True
                continue
            counts["num_valid"] += 1
            per_segment[seg] = per_segment.get(seg, 0) + 1
            if expiration == -1:
                removed += 1
            else:
                added += 1
    return {
        "counts": counts,
        "error_log_lines": "\n".join(log[:MAX_LOG_LINES]) or None,
        "segment_log_lines": "\n".join(f"{s}:{n}" for s, n in sorted(per_segment.items())) or None,
        "added": added,
        "removed": removed,
        "invalid": len(log),
    }


def _batch_upload(request: Request, job_id: str, world: _World) -> Response:
    if request.content_type != "application/octet-stream":
        return upload_error(400, "INVALID_CONTENT_TYPE", "Content-Type must be application/octet-stream")
    now = time.time()
    with world.lock:
        job = world.jobs.get(job_id)
        if job is None or job["scope"] != request.scope:
            return upload_error(404, "NOTFOUND", "No upload job for this URL")
        if job["uploaded"] is not None:
            return upload_error(400, "UPLOAD_URL_USED", "This upload URL was already used; request a new one")
        if now - job["created"] > UPLOAD_URL_SECONDS:
            job["phase"] = "error"
            job["error_code"] = "uploading-error"
            return upload_error(400, "UPLOAD_URL_EXPIRED", "Upload URLs must be used within 5 minutes")
    if not request.body:
        return upload_error(400, "EMPTY_FILE", "The segment file is empty")
    if len(request.body) > MAX_FILE:
        return upload_error(413, "FILESIZE_LIMIT_EXCEEDED", "Member exceeds maximum byte size allowed for a file")
    result = parse_segment_file(request.body.decode("latin-1"))
    with world.lock:
        job.update(uploaded=now, phase="validating", result=result)
    return json_response(
        200, {"response": {"segment_upload": {"job_id": job_id}, "status": "OK"}}, stats={"jobs_uploaded": 1}
    )


def _batch_status(request: Request, world: _World) -> Response:
    member_id, problem = _member_param(request)
    if problem is not None:
        return problem
    job_id = request.query_params().get("job_id", "")
    stats = None
    with world.lock:
        job = world.jobs.get(job_id)
        if job is None or job["member_id"] != member_id or job["scope"] != request.scope:
            return error(404, "NOTFOUND", "batch segment upload job not found")
        if job["uploaded"] is not None and job["phase"] != "completed":
            job["reads"] += 1
            if job["reads"] == 1:
                job["phase"] = "processing"
            else:
                job["phase"] = "completed"
                job["completed"] = time.time()
                result = job["result"]
                stats = {
                    "jobs_completed": 1,
                    "rows_added": result["added"],
                    "rows_removed": result["removed"],
                    "rows_invalid": result["invalid"],
                }
        public = _job_view(job)
    return ok({"start_element": 0, "count": 1, "num_elements": 100, "batch_segment_upload_job": public}, stats=stats)


def _job_view(job: dict[str, Any]) -> dict[str, Any]:
    phase = job["phase"]
    result = job["result"] if phase == "completed" else None
    counts = result["counts"] if result else {}
    uploaded = job["uploaded"]
    view = {
        "phase": phase,
        "start_time": _now_text(job["created"]),
        "uploaded_time": _now_text(uploaded) if uploaded else None,
        "validated_time": _now_text(uploaded) if phase in ("processing", "completed") else None,
        "completed_time": _now_text(job.get("completed")) if phase == "completed" else None,
        "error_code": job.get("error_code"),
        "time_to_process": "0.01" if phase == "completed" else None,
        "percent_complete": {"starting": 0, "validating": 25, "processing": 50, "completed": 100}.get(phase, 0),
        **{name: counts.get(name, 0) for name in parse_segment_file("")["counts"]},
        "error_log_lines": result["error_log_lines"] if result else None,
        "segment_log_lines": result["segment_log_lines"] if result else None,
        "id": job["id"],
        "job_id": job["job_id"],
        "member_id": job["member_id"],
        "created_on": _now_text(job["created"]),
        "last_modified": _now_text(),
    }
    return view


# Dispatch ----------------------------------------------------------------------------------------------------------


def handle(request: Request, route: tuple[str, str], state: Any) -> Response:
    kind, job_id = route
    world = _world(state)
    if kind == "auth":
        return _login(request, world)
    if not _authenticated(request, world):
        if kind == "batch_upload":
            return upload_error(401, "NOAUTH", NOT_LOGGED_IN)
        return error(401, "NOAUTH", NOT_LOGGED_IN)
    if kind == "rt_segment":
        return _rt_answer(request)
    if kind == "member":
        return _member(request)
    if kind == "segment":
        return _segment(request)
    if kind == "batch_open":
        return _batch_open(request, world)
    if kind == "batch_upload":
        return _batch_upload(request, job_id, world)
    return _batch_status(request, world)


# Statistics --------------------------------------------------------------------------------------------------------


def new_stats() -> dict[str, Any]:
    return {
        "requests": 0,
        "errors": 0,
        "logins": 0,
        "rows_added": 0,
        "rows_removed": 0,
        "rows_invalid": 0,
        "jobs_opened": 0,
        "jobs_uploaded": 0,
        "jobs_completed": 0,
    }


def apply_stats(stats: dict[str, Any], deltas: dict[str, Any]) -> None:
    for key, value in deltas.items():
        stats[key] = stats.get(key, 0) + value


def export_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return dict(stats)
