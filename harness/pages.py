"""The pages `egress report` writes, each one self-contained (inline style, inline SVG, one
inline script for the hover panel and the copy buttons; nothing loaded from anywhere): a run's
report, a learn's report and the index of a folder of recordings. Pure: views in, HTML out.
The fix's tabs are radio buttons and CSS, so they work without the script.

Audit runs speak of "would be denied" everywhere: in audit mode nothing was denied, the
recording says what enforce mode would have done.
"""

from __future__ import annotations

__all__ = [
    "IndexEntry",
    "destination_verdict",
    "index_page",
    "learn_page",
    "run_page",
    "run_summary_line",
    "timeline_section",
    "would_deny_phrase",
]

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from harness.diagnose import Diagnosis, diagnose
from harness.errors import HarnessError
from harness.fixformats import audit_fix_policy, fix_policy, fix_texts
from harness.policy.model import Policy
from harness.report import Destination, destinations
from harness.reportfiles import LearnView, RunView
from harness.timeline import build_timeline, legend_html, render_svg

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1d1d1f; max-width: 1220px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
th { border-bottom: 1px solid #999; } .num { text-align: right; }
.allow, .success { color: #17663a; } .deny, .failure { color: #b3261e; font-weight: 600; }
.would-deny { color: #b35c00; font-weight: 600; }
.note { background: #fff4e0; border-left: 4px solid #f08c00; padding: 6px 10px; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; margin: 6px 0; font-size: 12px; }
.swatch { display: inline-block; width: 14px; height: 10px; margin-right: 5px; }
.swatch.tick { width: 3px; height: 10px; }
svg.timeline-svg .bar:hover { stroke: #000; stroke-width: 1; }
#event-log { font: 12px/1.35 ui-monospace, monospace; }
#event-log .row { white-space: pre-wrap; padding: 1px 4px; }
#event-log .output { color: #555; } #event-log .event.allow { background: #e7f5ec; }
#event-log .event.deny { background: #fdecea; } #event-log .event.would-deny { background: #fff4e0; }
#event-log .event.dns { background: #f2f2f7; color: #444; }
#event-log .ts { color: #888; margin-right: 1em; }
pre.fix, .tab-panel pre { background: #f6f8fa; padding: 8px; white-space: pre-wrap;
  font: 12px/1.35 ui-monospace, monospace; margin: 0; }
.tabs { border: 1px solid #d0d7de; border-radius: 6px; margin-top: 8px; }
.tabs > input { position: absolute; opacity: 0; pointer-events: none; }
.tabs > label { display: inline-block; padding: 6px 14px; cursor: pointer; color: #444;
  border-bottom: 2px solid transparent; }
.tab-panel { display: none; border-top: 1px solid #d0d7de; padding: 8px; position: relative; }
.hover { position: absolute; display: none; max-width: 520px; background: #fff; z-index: 10;
  border: 1px solid #8c959f; box-shadow: 0 2px 8px rgba(0,0,0,.15); padding: 6px 8px;
  font: 12px/1.35 ui-monospace, monospace; white-space: pre-wrap; pointer-events: none; }
.copy { position: absolute; right: 14px; top: 14px; font: 12px system-ui; cursor: pointer; }
"""

_SCRIPT = """
// Hover: a bar's (or tick's) details in a panel next to the pointer. Without script the
// SVG <title> still gives the browser's own tooltip; with it, the title moves to data-hover so
// only one shows.
var hover = document.createElement('div'); hover.id = 'hover'; hover.className = 'hover';
document.body.appendChild(hover);
function placeHover(event) {
  var right = document.documentElement.scrollWidth - 540;
  hover.style.left = Math.max(0, Math.min(event.pageX + 12, right)) + 'px';
  hover.style.top = (event.pageY + 14) + 'px';
}
document.querySelectorAll('svg.timeline-svg .bar, svg.timeline-svg .dns-tick,'
    + ' svg.timeline-svg .output-tick').forEach(function (el) {
  var title = el.querySelector('title');
  if (!title) return;
  el.dataset.hover = title.textContent; el.removeChild(title);
  el.addEventListener('mouseenter', function (event) {
    hover.textContent = el.dataset.hover; hover.style.display = 'block'; placeHover(event); });
  el.addEventListener('mousemove', placeHover);
  el.addEventListener('mouseleave', function () { hover.style.display = 'none'; });
});
document.querySelectorAll('button.copy').forEach(function (button) {
  button.addEventListener('click', function () {
    var text = document.getElementById(button.dataset.target).textContent;
    function done() { button.textContent = 'Copied'; setTimeout(function () {
      button.textContent = 'Copy'; }, 1500); }
    // A page opened from disk may be refused the clipboard API: copy the selected text then.
    function viaSelection() {
      var area = document.createElement('textarea'); area.value = text;
      document.body.appendChild(area); area.select(); document.execCommand('copy');
      document.body.removeChild(area); done();
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, viaSelection);
    } else {
      viaSelection();
    }
  });
});
"""


def would_deny_phrase(audit: bool) -> str:
    return "would be denied" if audit else "denied"


def _head(title: str, extra_style: str = "") -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>{_STYLE}{extra_style}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
    )


def _tail() -> str:
    return f"<script>{_SCRIPT}</script></body></html>"


def destination_verdict(row: Destination) -> tuple[str, str]:
    """(css class, words) for a destination row: an audit run's Allow+would Deny is "would be
    denied", never "Allow"."""
    would = row.would.split("+")
    action = row.action.split("+")
    if "Deny" in would and "Deny" not in action:
        return "would-deny", "would be denied"
    if "Deny" in would:
        return "deny", "denied" if "Allow" not in would else "allowed and denied"
    return "allow", "allowed"


# --- the fix ----------------------------------------------------------------------------------


def _fix_tabs(fix: str | Policy, group: str) -> str:
    """`fix`: the diagnosis' rule list (policy YAML) or a policy."""
    try:
        texts = fix_texts(fix if isinstance(fix, Policy) else fix_policy(fix))
    except HarnessError as error:  # the suggester's output always loads; say so if it does not
        return (
            f"<pre class=fix>{escape(str(fix))}</pre><p>(not exportable: {escape(str(error))})</p>"
        )
    css = "".join(
        f"#{group}-{fmt}:checked ~ #{group}-panel-{fmt} {{ display: block; }}"
        f"#{group}-{fmt}:checked + label {{ border-bottom-color: #0969da; color: #000;"
        " font-weight: 600; }"
        for fmt, _, _ in texts
    )
    parts = [f"<style>{css}</style><div class=tabs id={group}>"]
    for number, (fmt, title, _) in enumerate(texts):
        checked = " checked" if number == 0 else ""
        parts.append(
            f'<input type=radio name="{group}" id="{group}-{fmt}"{checked}>'
            f'<label for="{group}-{fmt}" class=tab data-format="{fmt}">{escape(title)}</label>'
        )
    for fmt, title, text in texts:
        parts.append(
            f'<div class=tab-panel id="{group}-panel-{fmt}" data-format="{fmt}">'
            f'<button class=copy type=button data-target="{group}-text-{fmt}">Copy</button>'
            f'<pre id="{group}-text-{fmt}" aria-label="{escape(title)}">{escape(text)}</pre></div>'
        )
    parts.append("</div>")
    return "".join(parts)


def _diagnosis_section(view: RunView, diagnosis: Diagnosis) -> str:
    audit = view.audit
    denied = would_deny_phrase(audit)
    if not diagnosis.denied:
        return (
            "<h2>Diagnosis</h2><pre class=fix id=diagnosis>"
            "No destination was denied: the failure is not the firewall's.</pre>"
        )
    lines = [f"{denied.capitalize()}, in order: {', '.join(diagnosis.denied)}"]
    if diagnosis.culprit:
        if audit:
            lines.append(f"In enforce mode, {diagnosis.culprit} would be denied first")
        elif view.outcome == "failure":
            lines.append(f"Most likely cause: {diagnosis.culprit} was denied")
        else:
            lines.append(f"{diagnosis.culprit} was denied (the run still succeeded)")
        if diagnosis.evidence:
            lines.append(f"  {diagnosis.client}: {diagnosis.evidence.strip()[:200]}")
    parts = [
        "<h2>Diagnosis</h2>",
        f"<pre class=fix id=diagnosis>{escape(chr(10).join(lines))}</pre>",
    ]
    if audit:
        hosts = ", ".join(diagnosis.denied)
        parts.append(
            f"<h3>The rules to add</h3><p>Allow what enforce mode would deny ({escape(hosts)}),"
            " as a rule collection group of its own next to the policy's own groups; pick the"
            " format you deploy from.</p>"
        )
        parts.append(_fix_tabs(audit_fix_policy(view.events), "fix"))
    elif diagnosis.fix:
        parts.append(
            f"<h3>The rule to add</h3><p>Allows {escape(diagnosis.culprit or '')}, as a rule"
            " collection group of its own next to the policy's own groups; pick the format you"
            " deploy from.</p>"
        )
        parts.append(_fix_tabs(diagnosis.fix, "fix"))
    return "".join(parts)


# --- a run ------------------------------------------------------------------------------------


def _event_log(view: RunView) -> str:
    rows = [(ts, "output", "output", line) for ts, line, _ in view.output]
    for event in view.events:
        if event.kind == "lifecycle":
            continue
        if event.kind == "dns":
            css = "dns"
        elif event.would == "Deny":
            css = "deny" if event.action == "Deny" else "would-deny"
        else:
            css = "allow"
        text = event.azure or f"{event.kind} {event.host}"
        if css == "would-deny":
            text += "  (audit mode: would be denied, was allowed)"
        rows.append((str(event.ts or ""), str(event.kind), f"event {css}", text))
    rows.sort(key=lambda row: row[0])
    parts = [f"<details id=event-log><summary>Event log ({len(rows)} lines)</summary>"]
    for ts, kind, css, text in rows:
        parts.append(
            f"<div class='row {css}' data-kind={escape(kind)}><span class=ts>"
            f"{escape(ts[11:23])}</span>{escape(text)}</div>"
        )
    parts.append("</details>")
    return "\n".join(parts)


def timeline_section(view: RunView, heading: str = "Timeline", svg_id: str = "timeline-svg") -> str:
    timeline = build_timeline(view.events, view.output, audit=view.audit)
    start = escape(timeline.start_ts[11:23]) if timeline.start_ts else "?"
    return (
        f"<h2>{escape(heading)}</h2><p>From {start} UTC, {timeline.span:.2f} s;"
        f" {len(timeline.bars)} connection(s) to {sum(len(r.hosts) for r in timeline.rows)}"
        " host(s). Hover a bar for its log line, bytes and rule.</p>"
        f"{legend_html(timeline)}<div class=timeline>{render_svg(timeline, svg_id)}</div>"
    )


def _expectations_note(view: RunView) -> str:
    count = len(view.expectations_failed)
    return f"; <span class=failure>{count} expectation(s) failed</span>" if count else ""


def run_summary_line(view: RunView) -> str:
    """The outcome in one line of words, for the page and the CLI."""
    rows = destinations(view.events)
    stopped = [row for row in rows if destination_verdict(row)[0] in ("deny", "would-deny")]
    words = would_deny_phrase(view.audit)
    text = f"{len(rows)} destination(s), {len(stopped)} {words}"
    if stopped:
        text += ": " + ", ".join(row.label for row in stopped[:5])
        text += f" and {len(stopped) - 5} more" if len(stopped) > 5 else ""
    if view.audit and stopped:
        text += " (audit mode: allowed this time, denied in enforce mode)"
    return text


def run_page(view: RunView, title: str | None = None) -> str:
    summary = view.summary
    title = title or f"Egress report: {view.scenario}"
    outcome = view.outcome
    rows = destinations(view.events)
    parts = [
        _head(title),
        (
            f"<p>Outcome: <span class={escape(outcome)} id=outcome>{escape(outcome)}</span>; "
            f"policy {escape(str(summary.get('policy', '?')))} in"
            f" <span id=mode>{escape(view.mode)}</span> mode; "
            f"{escape(str(summary.get('duration_s', '?')))} s{_expectations_note(view)}.</p>"
            f"<p id=summary-line>{escape(run_summary_line(view))}</p>"
        ),
    ]
    failed = view.expectations_failed
    if failed:
        parts.append(
            "<ul id=expectations>"
            + "".join(f"<li class=failure>{escape(line)}</li>" for line in failed)
            + "</ul>"
        )
    if view.audit:
        parts.append(
            "<p class=note id=audit-note>Audit mode: every connection was let through. Those"
            " marked <b>would be denied</b> are what the policy denies in enforce mode.</p>"
        )
    parts.append(timeline_section(view))
    if any("Deny" in row.would for row in rows) or outcome == "failure":
        parts.append(_diagnosis_section(view, diagnose(view.events, view.output_text)))
    parts.append(
        "<h2>Destinations</h2><table id=destinations><tr><th>host</th><th>port</th>"
        "<th>protocol</th><th>verdict</th><th>rule</th><th class=num>connections</th>"
        "<th class=num>bytes up</th><th class=num>bytes down</th></tr>"
    )
    for row in rows:
        css, words = destination_verdict(row)
        parts.append(
            f"<tr><td>{escape(row.host)}</td><td>{row.port}</td><td>{escape(row.protocol)}</td>"
            f"<td class={css}>{escape(words)}</td><td>{escape(row.rule or '(default action)')}</td>"
            f"<td class=num>{row.connections}</td><td class=num>{row.bytes_up}</td>"
            f"<td class=num>{row.bytes_down}</td></tr>"
        )
    parts.append("</table>")
    hits: dict[str, int] = {}
    for event in view.events:
        if event.rule:
            key = f"{event.rule['group']} / {event.rule['collection']} / {event.rule['rule']}"
            hits[key] = hits.get(key, 0) + 1
    parts.append(
        "<h2>Rule hits</h2><table id=rule-hits><tr><th>rule</th><th class=num>hits</th></tr>"
    )
    for rule, count in sorted(hits.items(), key=lambda item: -item[1]):
        parts.append(f"<tr><td>{escape(rule)}</td><td class=num>{count}</td></tr>")
    if not hits:
        parts.append(
            "<tr><td>(no rule matched: every decision was the default action)</td><td></td></tr>"
        )
    parts.append("</table>")
    parts.append(_event_log(view))
    parts.append(_tail())
    return "\n".join(parts)


# --- a learn ----------------------------------------------------------------------------------

_ROLE_TEXT = {
    "audit": "audit run: everything allowed, every destination recorded",
    "verify": "verify run: enforce, behind the learned destinations",
    "without": "classify: enforce, with {host} denied (try {attempt})",
    "verify-required": "verify run: enforce, behind the required destinations only",
    "verify-joint": "verify run: enforce, behind the allowlist merged over several scenarios",
}


def _role_text(run: dict[str, object]) -> str:
    template = _ROLE_TEXT.get(str(run.get("role")), str(run.get("role")))
    return template.format(host=run.get("host", "?"), attempt=run.get("attempt", 1))


def _evidence(destination: dict[str, object], runs: list[dict[str, object]]) -> str:
    host = destination.get("host")
    tries = [run for run in runs if run.get("role") == "without" and run.get("host") == host]
    tries.sort(key=lambda run: int(str(run.get("attempt", 1))))
    if not tries:
        return "not classified (learn with --classify to re-run with it denied)"
    said = [f"try {run.get('attempt')}: {run.get('outcome')} in {run.get('duration_s')} s"
            for run in tries]  # fmt: skip
    verdict = {
        "required": "the workload fails without it",
        "optional": "the workload succeeds without it, twice",
        "flaky": "the tries without it disagree, so it is kept",
    }.get(str(destination.get("classification")), "")
    return f"denied it: {'; '.join(said)}" + (f" → {verdict}" if verdict else "")


def learn_page(learn: LearnView, report_of: dict[str, str]) -> str:
    """`report_of`: run folder (as in learn.json) -> the link to its report."""
    manifest = learn.manifest
    verified = bool(manifest.get("verified"))
    runs = [run for run, _ in learn.runs]
    parts = [
        _head(f"Egress learn report: {learn.scenario}"),
        (
            f"<p>Allowlist <span id=verified class={'success' if verified else 'failure'}>"
            f"{'verified' if verified else 'NOT verified'}</span>: {len(runs)} run(s),"
            f" {len(manifest.get('destinations') or [])} destination(s) found,"  # type: ignore[arg-type]
            f" {len(manifest.get('listed') or [])} listed.</p>"  # type: ignore[arg-type]
        ),
        (
            "<h2>Runs</h2><table id=learn-runs><tr><th>run</th><th>outcome</th>"
            "<th class=num>seconds</th><th class=num>destinations</th><th class=num>denied</th>"
            "<th>recording</th></tr>"
        ),
    ]
    for run, view in learn.runs:
        folder = str(run.get("folder", ""))
        if view is None:
            parts.append(
                f"<tr data-role={escape(str(run.get('role')))}><td>{escape(_role_text(run))}</td>"
                f"<td colspan=4>(recording missing)</td><td>{escape(folder)}</td></tr>"
            )
            continue
        rows = destinations(view.events)
        stopped = sum(destination_verdict(row)[0] in ("deny", "would-deny") for row in rows)
        outcome = view.outcome
        link = report_of.get(folder)
        cell = f"<a href='{escape(link)}'>{escape(view.folder.name)}</a>" if link else ""
        parts.append(
            f"<tr data-role={escape(str(run.get('role')))}><td>{escape(_role_text(run))}</td>"
            f"<td class={escape(outcome)}>{escape(outcome)}</td>"
            f"<td class=num>{escape(str(view.summary.get('duration_s', '?')))}</td>"
            f"<td class=num>{len(rows)}</td>"
            f"<td class=num>{stopped}{' would be denied' if view.audit and stopped else ''}</td>"
            f"<td>{cell}</td></tr>"
        )
    parts.append("</table>")
    parts.append(
        "<h2>Destinations</h2><table id=learn-destinations><tr><th>destination</th>"
        "<th>protocols</th><th class=num>connections</th><th class=num>bytes</th>"
        "<th>classification</th><th>listed</th><th>evidence</th></tr>"
    )
    for destination in manifest.get("destinations") or []:  # type: ignore[union-attr]
        if not isinstance(destination, dict):
            continue
        classification = str(destination.get("classification") or "unclassified")
        parts.append(
            f"<tr data-host='{escape(str(destination.get('host')))}'>"
            f"<td>{escape(str(destination.get('host')))}</td>"
            f"<td>{escape(', '.join(destination.get('protocols') or []))}</td>"
            f"<td class=num>{destination.get('connections', 0)}</td>"
            f"<td class=num>{destination.get('bytes', 0)}</td>"
            f"<td class='classification {escape(classification)}'>{escape(classification)}</td>"
            f"<td>{'yes' if destination.get('listed') else 'no'}</td>"
            f"<td>{escape(_evidence(destination, runs))}</td></tr>"
        )
    parts.append("</table>")
    for role, heading in (("audit", "Audit run"), ("verify", "Verify run")):
        for run, view in learn.runs:
            if run.get("role") == role and view is not None:
                parts.append(timeline_section(view, f"{heading}: timeline", f"{role}-timeline"))
                break
    parts.append(_tail())
    return "\n".join(parts)


# --- the index --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexEntry:
    folder: str  # the recording's folder name
    link: str  # its report, relative to the index
    kind: str  # run | learn
    scenario: str
    mode: str
    outcome: str  # success | failure | verified | NOT verified | unreadable
    destinations: int
    denied: int
    audit: bool
    duration_s: str
    problem: str = ""
    expectations_failed: int = 0


def index_page(title: str, entries: Sequence[IndexEntry]) -> str:
    parts = [
        _head(title),
        f"<p>{len(entries)} recording(s), newest first.</p>",
        (
            "<table id=recordings><tr><th>recording</th><th>kind</th><th>scenario</th><th>mode</th>"
            "<th>outcome</th><th class=num>destinations</th><th class=num>denials</th>"
            "<th class=num>seconds</th></tr>"
        ),
    ]
    for entry in entries:
        css = {"success": "success", "verified": "success"}.get(entry.outcome, "failure")
        denied = (
            f"{entry.denied} would be denied" if entry.audit and entry.denied else str(entry.denied)
        )
        if entry.kind == "learn":
            denied = "–"  # a learn's runs deny on purpose; each run's row counts its own
        name = (
            f"<a href='{escape(entry.link)}'>{escape(entry.folder)}</a>"
            if entry.link
            else escape(entry.folder)
        )
        problem = f" ({escape(entry.problem)})" if entry.problem else ""
        if entry.expectations_failed:
            problem += f", {entry.expectations_failed} expectation(s) failed"
            css = "failure"
        parts.append(
            f"<tr class=recording data-folder='{escape(entry.folder)}'><td>{name}</td>"
            f"<td>{escape(entry.kind)}</td><td>{escape(entry.scenario)}</td>"
            f"<td>{escape(entry.mode)}</td><td class={css}>{escape(entry.outcome)}{problem}</td>"
            f"<td class=num>{entry.destinations}</td>"
            f"<td class='num{' would-deny' if entry.audit and entry.denied else ''}'>{denied}</td>"
            f"<td class=num>{escape(entry.duration_s)}</td></tr>"
        )
    parts.append("</table>")
    parts.append(_tail())
    return "\n".join(parts)
