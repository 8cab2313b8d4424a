// kagzictl output: time formats, terminal escaping, tables and JSON.
// Owns no state. JSON values stored by Kagzi (inputs, outputs, step
// results) are re-emitted through RapidJSON's Reader -> Writer, which both
// validates them and keeps numbers exactly as written.
#include "render.h"

#include <ctime>
#include <limits>

#include <fmt/format.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include "kagzi/core/validation.h"

namespace kagzi::ctl {
namespace {

constexpr Micros kMicrosPerSecond = 1'000'000;

// Splits t into whole seconds and the microseconds within that second,
// rounding towards minus infinity so times before 1970 still format.
std::pair<std::time_t, int> SplitMicros(Micros t) {
  Micros secs = t / kMicrosPerSecond;
  Micros frac = t % kMicrosPerSecond;
  if (frac < 0) {
    frac += kMicrosPerSecond;
    --secs;
  }
  return {static_cast<std::time_t>(secs), static_cast<int>(frac)};
}

std::tm UtcTime(std::time_t secs) {
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return tm;
}

// Length of the UTF-8 sequence starting at text[i], or 0 if it is not a
// valid one.
std::size_t Utf8SequenceLength(std::string_view text, std::size_t i) {
  auto c = static_cast<unsigned char>(text[i]);
  std::size_t len = 0;
  if (c < 0x80) {
    return 1;
  } else if ((c & 0xE0) == 0xC0) {
    len = 2;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
  } else {
    return 0;
  }
  if (i + len > text.size() || !IsValidUtf8(text.substr(i, len))) return 0;
  return len;
}

// True for the two-byte encodings of U+0080..U+009F (C1 controls).
bool IsC1Control(std::string_view text, std::size_t i, std::size_t len) {
  return len == 2 && static_cast<unsigned char>(text[i]) == 0xC2 &&
         static_cast<unsigned char>(text[i + 1]) <= 0x9F;
}

std::string TimeOrDash(std::optional<Micros> t) { return t ? FormatTime(*t) : "-"; }

// end - start, saturated: times come from the database, and a corrupt or
// infinite one must not overflow.
Micros Span(Micros end, Micros start) {
  Micros d = 0;
  if (__builtin_sub_overflow(end, start, &d)) {
    return end > start ? std::numeric_limits<Micros>::max() : std::numeric_limits<Micros>::min();
  }
  return d;
}

// How long a run took (or has taken so far, "-" while unfinished).
std::string RunDuration(const RunRecord& run) {
  if (!run.finished_at) return "-";
  return FormatElapsed(Span(*run.finished_at, run.started_at.value_or(run.created_at)));
}

bool IsPending(const StepRecord& step) {
  return step.status == StepStatus::kRetrying || step.status == StepStatus::kWaiting;
}

std::string StepDuration(const StepRecord& step) {
  if (IsPending(step)) return "-";
  if (step.kind == StepKind::kSleep && step.wake_at) {
    // A sleep's interesting span is how long it parks the run.
    return FormatElapsed(Span(*step.wake_at, step.started_at.value_or(step.finished_at)));
  }
  if (!step.started_at) return "-";
  return FormatElapsed(Span(step.finished_at, *step.started_at));
}

std::string ErrorText(const StepRecord& step) {
  return fmt::format("{} error: {}", ErrorKindName(step.error_kind), step.error.value_or(""));
}

// What the step is about: its wait, its error, its child or its result.
std::string StepDetail(const StepRecord& step) {
  std::string what;
  if (step.event_name) what = fmt::format("event \"{}\"", *step.event_name);
  if (step.child_run_id) what = "child " + *step.child_run_id;
  auto join = [](std::string a, const std::string& b) {
    if (a.empty()) return b;
    if (b.empty()) return a;
    return a + ": " + b;
  };
  switch (step.status) {
    case StepStatus::kFailed:
      return join(what, ErrorText(step));
    case StepStatus::kRetrying: {
      std::string next = step.wake_at ? "next attempt " + FormatTime(*step.wake_at)
                                      : std::string("next attempt pending");
      if (step.error) next += " after " + ErrorText(step);
      return join(what, next);
    }
    case StepStatus::kWaiting: {
      std::string waiting = "waiting";
      if (step.kind == StepKind::kEvent) {
        waiting += step.wake_at ? " until " + FormatTime(*step.wake_at) : " (no timeout)";
      } else if (step.wake_at) {
        waiting += " until " + FormatTime(*step.wake_at);
      }
      return join(what, waiting);
    }
    case StepStatus::kCompleted:
      break;
  }
  if (step.kind == StepKind::kSleep && step.wake_at) {
    return join(what, "wakes " + FormatTime(*step.wake_at));
  }
  return join(what, step.output ? Preview(*step.output) : "");
}

// The Reader -> Writer pipe of CompactJson. RapidJSON 1.1's
// Writer::RawNumber quotes the number (it writes a string); numbers must
// pass through verbatim, so that 12345678901234567890 or 1.10 is printed
// exactly as the workflow wrote it.
class CompactingWriter : public JsonWriter {
 public:
  using JsonWriter::JsonWriter;
  bool RawNumber(const char* text, rapidjson::SizeType length, bool /*copy*/) {
    return RawValue(text, length, rapidjson::kNumberType);
  }
};

std::string TrimRight(std::string s) {
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

}  // namespace

std::string FormatTime(Micros t) {
  auto [secs, micros] = SplitMicros(t);
  std::tm tm = UtcTime(secs);
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros / 1000);
}

std::string FormatRfc3339(Micros t) {
  auto [secs, micros] = SplitMicros(t);
  std::tm tm = UtcTime(secs);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
}

std::string FormatElapsed(Micros d) {
  Micros ms = d < 0 ? 0 : d / 1000;
  Micros secs = ms / 1000;
  if (secs < 60) return fmt::format("{}.{:03}s", secs, ms % 1000);
  if (secs < 3600) return fmt::format("{}m{:02}.{:03}s", secs / 60, secs % 60, ms % 1000);
  return fmt::format("{}h{:02}m{:02}s", secs / 3600, (secs / 60) % 60, secs % 60);
}

std::string EscapeText(std::string_view text, Newlines newlines) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    std::size_t len = Utf8SequenceLength(text, i);
    if (len == 0) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
      continue;
    }
    if (len == 1 && (c < 0x20 || c == 0x7F)) {
      if (newlines == Newlines::kKeep && (c == '\n' || c == '\t')) {
        out += static_cast<char>(c);
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '\t') {
        out += "\\t";
      } else {
        out += fmt::format("\\x{:02x}", c);
      }
    } else if (IsC1Control(text, i, len)) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned char>(text[i + 1]));
    } else {
      out.append(text.substr(i, len));
    }
    i += len;
  }
  return out;
}

std::size_t DisplayWidth(std::string_view text) {
  std::size_t n = 0;
  for (char ch : text) {
    if ((static_cast<unsigned char>(ch) & 0xC0) != 0x80) ++n;
  }
  return n;
}

std::optional<std::string> CompactJson(std::string_view json) {
  rapidjson::MemoryStream ms(json.data(), json.size());
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> is(ms);
  rapidjson::StringBuffer buffer;
  CompactingWriter writer(buffer);
  rapidjson::Reader reader;
  constexpr unsigned kFlags = rapidjson::kParseValidateEncodingFlag |
                              rapidjson::kParseIterativeFlag |
                              rapidjson::kParseNumbersAsStringsFlag;
  if (!reader.Parse<kFlags>(is, writer)) return std::nullopt;
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::string TerminalSafeJson(std::string_view json) {
  std::string out;
  out.reserve(json.size());
  for (std::size_t i = 0; i < json.size(); ++i) {
    auto c = static_cast<unsigned char>(json[i]);
    if (c == 0x7F) {
      out += "\\u007f";
    } else if (c == 0xC2 && i + 1 < json.size() &&
               static_cast<unsigned char>(json[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(json[i + 1]) <= 0x9F) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned char>(json[i + 1]));
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string Preview(std::string_view json, std::size_t max_chars) {
  std::optional<std::string> compact = CompactJson(json);
  std::string text = EscapeText(compact ? std::string_view(*compact) : json);
  if (DisplayWidth(text) <= max_chars) return text;
  std::size_t chars = 0;
  std::size_t cut = 0;
  const std::size_t keep = max_chars > 3 ? max_chars - 3 : 0;
  for (; cut < text.size(); ++cut) {
    if ((static_cast<unsigned char>(text[cut]) & 0xC0) != 0x80) {
      if (chars == keep) break;
      ++chars;
    }
  }
  return text.substr(0, cut) + "...";
}

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  for (auto& cell : cells) cell = EscapeText(cell);
  rows_.push_back(std::move(cells));
}

std::string Table::Render() const {
  std::vector<std::size_t> widths(headers_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], DisplayWidth(row[i]));
    }
  };
  measure(headers_);
  for (const auto& row : rows_) measure(row);
  auto render_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - DisplayWidth(row[i]) + 2, ' ');
    }
    return TrimRight(std::move(line)) + "\n";
  };
  std::string out = render_row(headers_);
  for (const auto& row : rows_) out += render_row(row);
  return out;
}

void FieldList::Add(std::string key, std::string_view value) {
  fields_.emplace_back(std::move(key), EscapeText(value));
}

std::string FieldList::Render() const {
  std::size_t width = 0;
  for (const auto& [key, value] : fields_) width = std::max(width, DisplayWidth(key));
  std::string out;
  for (const auto& [key, value] : fields_) {
    out += TrimRight(fmt::format("{}:{}{}", key, std::string(width - DisplayWidth(key) + 2, ' '),
                                 value)) +
           "\n";
  }
  return out;
}

std::string RenderRunFields(const RunRecord& run, const std::optional<std::string>& waiting) {
  FieldList f;
  f.Add("id", run.id);
  f.Add("workflow", run.workflow);
  f.Add("version", run.version ? std::to_string(*run.version) : "- (not yet claimed)");
  f.Add("status", RunStatusName(run.status));
  f.Add("attempts", std::to_string(run.attempts));
  f.Add("created", FormatTime(run.created_at));
  f.Add("started", TimeOrDash(run.started_at));
  std::string finished = TimeOrDash(run.finished_at);
  if (run.finished_at) finished += " (took " + RunDuration(run) + ")";
  f.Add("finished", finished);
  if (run.status == RunStatus::kSleeping) {
    // Parked until woken (an event wait or a child call without a timeout):
    // available_at is infinite, which reads as 0.
    f.Add("wakes", run.available_at > 0 ? FormatTime(run.available_at)
                                        : "when woken (an event arrives or a child run finishes)");
  }
  if (run.deadline_at) f.Add("deadline", FormatTime(*run.deadline_at));
  if (run.cancel_requested) {
    std::string cancel = run.status == RunStatus::kCancelled ? "requested" : "requested, pending";
    if (run.cancel_reason) cancel += ": " + *run.cancel_reason;
    f.Add("cancel", cancel);
  }
  if (run.idempotency_key) f.Add("key", *run.idempotency_key);
  if (run.parent_run_id) f.Add("parent", *run.parent_run_id);
  if (run.error) f.Add("error", *run.error);
  if (waiting) f.Add("waiting", *waiting);
  return f.Render();
}

std::string RenderStepsTable(const std::vector<StepRecord>& steps) {
  Table t(
      {"SEQ", "STEP", "KIND", "STATUS", "ATTEMPTS", "STARTED", "FINISHED", "DURATION", "DETAIL"});
  for (const auto& s : steps) {
    t.AddRow({std::to_string(s.seq), s.step_id, std::string(StepKindName(s.kind)),
              std::string(StepStatusName(s.status)), std::to_string(s.attempts),
              TimeOrDash(s.started_at), IsPending(s) ? "-" : FormatTime(s.finished_at),
              StepDuration(s), StepDetail(s)});
  }
  return t.Render();
}

std::string RenderChildrenTable(const std::vector<RunRecord>& children) {
  Table t({"CHILD", "WORKFLOW", "STATUS", "CREATED", "DURATION"});
  for (const auto& r : children) {
    t.AddRow({r.id, r.workflow, std::string(RunStatusName(r.status)), FormatTime(r.created_at),
              RunDuration(r)});
  }
  return t.Render();
}

std::string RenderRunsTable(const std::vector<RunRecord>& runs) {
  Table t({"ID", "WORKFLOW", "VERSION", "STATUS", "CREATED", "DURATION"});
  for (const auto& r : runs) {
    t.AddRow({r.id, r.workflow, r.version ? std::to_string(*r.version) : "-",
              std::string(RunStatusName(r.status)), FormatTime(r.created_at), RunDuration(r)});
  }
  return t.Render();
}

std::string RenderWorkflowsTable(const std::vector<WorkflowRecord>& workflows) {
  Table t({"WORKFLOW", "VERSION", "DAEMONS", "OPEN RUNS", "PLUGIN"});
  for (const auto& w : workflows) {
    t.AddRow({w.key.name, w.key.version == 0 ? "unpinned" : std::to_string(w.key.version),
              std::to_string(w.daemons.size()), std::to_string(w.open_runs),
              w.plugin_path.empty() ? "-" : w.plugin_path});
  }
  return t.Render();
}

std::string RenderDaemonsTable(const std::vector<DaemonRecord>& daemons, Micros now) {
  Table t({"ID", "HOST", "PID", "WORKER", "RESTARTS", "VERSION", "CONCURRENCY", "RUNNING",
           "HEARTBEAT", "STATE"});
  for (const auto& d : daemons) {
    t.AddRow({d.info.id, d.info.hostname, std::to_string(d.info.pid),
              d.info.worker_index > 0 ? std::to_string(d.info.worker_index) : "-",
              std::to_string(d.info.restarts), d.info.version, std::to_string(d.info.concurrency),
              std::to_string(d.running), FormatElapsed(Span(now, d.heartbeat_at)) + " ago",
              d.alive ? "alive" : "dead"});
  }
  return t.Render();
}

void WriteString(JsonWriter& w, std::string_view s) {
  if (IsValidUtf8(s)) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
    return;
  }
  std::string fixed;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len = Utf8SequenceLength(s, i);
    if (len == 0) {
      fixed += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
      ++i;
    } else {
      fixed.append(s.substr(i, len));
      i += len;
    }
  }
  w.String(fixed.data(), static_cast<rapidjson::SizeType>(fixed.size()));
}

void WriteMember(JsonWriter& w, std::string_view key, std::string_view value) {
  WriteString(w, key);
  WriteString(w, value);
}

namespace {

void WriteOptionalMember(JsonWriter& w, std::string_view key,
                         const std::optional<std::string>& value) {
  WriteString(w, key);
  if (value) {
    WriteString(w, *value);
  } else {
    w.Null();
  }
}

}  // namespace

void WriteTimeMember(JsonWriter& w, std::string_view key, std::optional<Micros> t) {
  WriteString(w, key);
  if (t) {
    WriteString(w, FormatRfc3339(*t));
  } else {
    w.Null();
  }
}

void WriteJsonMember(JsonWriter& w, std::string_view key, const std::optional<std::string>& json) {
  WriteString(w, key);
  if (!json) {
    w.Null();
    return;
  }
  if (std::optional<std::string> compact = CompactJson(*json)) {
    w.RawValue(compact->data(), compact->size(), rapidjson::kObjectType);
  } else {
    WriteString(w, *json);
  }
}

void WriteRunMembers(JsonWriter& w, const RunRecord& run) {
  WriteMember(w, "id", run.id);
  WriteMember(w, "workflow", run.workflow);
  WriteString(w, "version");
  if (run.version) {
    w.Int(*run.version);
  } else {
    w.Null();
  }
  WriteMember(w, "status", RunStatusName(run.status));
  WriteJsonMember(w, "input", run.input);
  WriteJsonMember(w, "output", run.output);
  WriteOptionalMember(w, "error", run.error);
  WriteString(w, "attempts");
  w.Int(run.attempts);
  WriteTimeMember(w, "created_at", run.created_at);
  WriteTimeMember(w, "started_at", run.started_at);
  WriteTimeMember(w, "finished_at", run.finished_at);
  WriteOptionalMember(w, "parent_run_id", run.parent_run_id);
  WriteOptionalMember(w, "idempotency_key", run.idempotency_key);
  WriteTimeMember(w, "deadline_at", run.deadline_at);
  WriteString(w, "cancel_requested");
  w.Bool(run.cancel_requested);
  WriteOptionalMember(w, "cancel_reason", run.cancel_reason);
}

void WriteStep(JsonWriter& w, const StepRecord& s) {
  // A FAILED entry has an error; a RETRYING one may carry its last one.
  const bool has_error = s.status == StepStatus::kFailed || s.error.has_value();
  w.StartObject();
  WriteMember(w, "step_id", s.step_id);
  WriteString(w, "seq");
  w.Int(s.seq);
  WriteMember(w, "kind", StepKindName(s.kind));
  WriteMember(w, "status", StepStatusName(s.status));
  WriteJsonMember(w, "output", s.output);
  WriteOptionalMember(w, "error", s.error);
  WriteOptionalMember(
      w, "error_kind",
      has_error ? std::optional<std::string>(ErrorKindName(s.error_kind)) : std::nullopt);
  WriteString(w, "attempts");
  w.Int(s.attempts);
  WriteTimeMember(w, "wake_at", s.wake_at);
  WriteTimeMember(w, "started_at", s.started_at);
  WriteTimeMember(w, "finished_at", s.finished_at);
  WriteOptionalMember(w, "event_name", s.event_name);
  WriteOptionalMember(w, "child_run_id", s.child_run_id);
  w.EndObject();
}

void WriteWorkflow(JsonWriter& w, const WorkflowRecord& wf) {
  w.StartObject();
  WriteMember(w, "workflow", wf.key.name);
  WriteString(w, "version");
  if (wf.key.version == 0) {
    w.Null();  // open runs not pinned to a version yet
  } else {
    w.Int(wf.key.version);
  }
  WriteString(w, "daemons");
  w.StartArray();
  for (const auto& id : wf.daemons) WriteString(w, id);
  w.EndArray();
  WriteString(w, "open_runs");
  w.Int(wf.open_runs);
  WriteOptionalMember(
      w, "plugin_path",
      wf.plugin_path.empty() ? std::nullopt : std::optional<std::string>(wf.plugin_path));
  w.EndObject();
}

void WriteDaemon(JsonWriter& w, const DaemonRecord& d, Micros now) {
  w.StartObject();
  WriteMember(w, "id", d.info.id);
  WriteMember(w, "hostname", d.info.hostname);
  WriteString(w, "pid");
  w.Int(d.info.pid);
  WriteMember(w, "version", d.info.version);
  WriteString(w, "concurrency");
  w.Int(d.info.concurrency);
  WriteString(w, "lease_ttl_ms");
  w.Int64(d.info.lease_ttl.count());
  WriteString(w, "running");
  w.Int(d.running);
  WriteTimeMember(w, "started_at", d.started_at);
  WriteTimeMember(w, "heartbeat_at", d.heartbeat_at);
  WriteString(w, "heartbeat_age_ms");
  w.Int64(std::max<Micros>(0, Span(now, d.heartbeat_at)) / 1000);
  WriteString(w, "alive");
  w.Bool(d.alive);
  WriteString(w, "supervisor_id");
  if (d.info.supervisor_id) {
    w.String(d.info.supervisor_id->c_str());
  } else {
    w.Null();
  }
  WriteString(w, "worker_index");
  w.Int(d.info.worker_index);
  WriteString(w, "restarts");
  w.Int(d.info.restarts);
  w.EndObject();
}

std::string FinishJson(const rapidjson::StringBuffer& buffer) {
  return TerminalSafeJson(std::string_view(buffer.GetString(), buffer.GetSize())) + "\n";
}

std::string RenderBatchStartIds(const std::vector<BatchStartOutcome>& runs) {
  std::string out;
  out.reserve(runs.size() * 37);
  for (const auto& run : runs) {
    if (run.run_id) out += EscapeText(*run.run_id) + "\n";
  }
  return out;
}

std::string RenderBatchStartJson(std::string_view workflow,
                                 const std::vector<BatchStartOutcome>& runs) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  WriteMember(w, "workflow", workflow);
  WriteString(w, "runs");
  w.StartArray();
  for (const auto& run : runs) {
    w.StartObject();
    WriteString(w, "line");
    w.Int(run.line);
    WriteOptionalMember(w, "id", run.run_id);
    WriteString(w, "created");
    w.Bool(run.created);
    WriteOptionalMember(w, "idempotency_key", run.idempotency_key);
    WriteOptionalMember(w, "error", run.error);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return FinishJson(buffer);
}

}  // namespace kagzi::ctl
