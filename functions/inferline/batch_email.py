"""The emails a batch job sends: what they say, and how they go out (SES, plus an .eml copy in
a local outbox folder when one is configured, so a person can open it on one machine)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str


def file_name(job: dict[str, Any]) -> str:
    """The uploaded file's name, as the user knows it."""
    if job.get("file_name"):
        return job["file_name"]
    key = job.get("source_key") or ""
    return key.rsplit("/", 1)[-1] or "your file"


def succeeded_mail(job: dict[str, Any], links: dict[str, str], expiry_seconds: int) -> Mail:
    """The results email: which file, rows ok / failed, and links to both outputs."""
    name, ok, failed = file_name(job), job.get("rows_ok", 0), job.get("rows_failed", 0)
    total = ok + failed
    subject = f"inferline batch predictions for {name}: {ok} of {total} rows predicted"
    if failed:
        subject += f", {failed} failed"
    lines = [
        f"Your batch prediction job for {name} (model {job['model']}) has finished.",
        "",
        f"Job id:        {job['job_id']}",
        f"Rows in file:  {total}",
        f"Rows predicted: {ok}",
        f"Rows failed:   {failed}",
        "",
        f"Predictions (results.csv): {links['results']}",
        f"Rows that could not be scored, with the reason (errors.csv): {links['errors']}",
        "",
        f"The links expire in {_duration(expiry_seconds)}.",
    ]
    return Mail(job["email"], subject, "\n".join(lines) + "\n")


def failed_mail(job: dict[str, Any], reason: str) -> Mail:
    """The email of a job that could not run at all, saying why."""
    name = file_name(job)
    subject = f"inferline batch predictions for {name} failed"
    lines = [
        f"Your batch prediction job for {name} (model {job['model']}) failed.",
        "",
        f"Job id: {job['job_id']}",
        "",
        "Reason:",
        reason,
        "",
        "Nothing was predicted from this file. Fix the problem and submit it as a new job.",
    ]
    return Mail(job["email"], subject, "\n".join(lines) + "\n")


def send(ses, sender: str, mail: Mail, outbox_dir: str | None = None) -> str:
    """Send through SES; also write an .eml to outbox_dir when set. Returns the SES id."""
    reply = ses.send_email(
        Source=sender,
        Destination={"ToAddresses": [mail.to]},
        Message={
            "Subject": {"Data": mail.subject, "Charset": "UTF-8"},
            "Body": {"Text": {"Data": mail.body, "Charset": "UTF-8"}},
        },
    )
    message_id = reply["MessageId"]
    if outbox_dir:
        write_eml(Path(outbox_dir), sender, mail, message_id)
    return message_id


def write_eml(outbox: Path, sender: str, mail: Mail, message_id: str) -> Path:
    # 8bit and long lines: the .eml stays readable as plain text, links unbroken
    message = EmailMessage(policy=policy.default.clone(max_line_length=998))
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="inferline.local")
    message.set_content(mail.body, cte="8bit")
    outbox.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", message_id)[:80]
    path = outbox / f"{stamp}-{safe}.eml"
    path.write_bytes(bytes(message))
    return path


def _duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day{'s' if days != 1 else ''}"
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{seconds} seconds"
