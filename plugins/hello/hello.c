/*
 * plugins/hello/hello.c -- the smallest Kagzi workflow, in plain C11 against
 * <kagzi/plugin.h> alone.
 *
 * Workflow "hello", version 1: one step, "greet", turns the input
 * {"name": "Ada"} into {"greeting": "Hello, Ada!"}, which is also the run's
 * output. "name" defaults to "world" when the input has no string "name".
 * There is no JSON library: a small scanner finds the top-level "name" member
 * and unescapes it, and a small writer escapes the greeting again.
 * No state is shared between runs, so concurrent runs are safe.
 */
#include <stdlib.h>
#include <string.h>

#include <kagzi/plugin.h>

/* ------------------------------------------------------------------------ */
/* Reading the input                                                        */
/* ------------------------------------------------------------------------ */

typedef struct json_scanner {
  const char *p;
  const char *end;
} json_scanner;

static void skip_whitespace(json_scanner *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) {
    s->p++;
  }
}

/* At a '"': moves past the closing quote. Returns 0 if the string is unterminated. */
static int skip_string(json_scanner *s) {
  s->p++;
  while (s->p < s->end) {
    if (*s->p == '\\') {
      s->p += (s->end - s->p >= 2) ? 2 : 1;
    } else if (*s->p++ == '"') {
      return 1;
    }
  }
  return 0;
}

/* Skips one value of any kind, without recursion. Returns 0 on malformed text. */
static int skip_value(json_scanner *s) {
  size_t depth = 0;
  do {
    skip_whitespace(s);
    if (s->p == s->end) return 0;
    switch (*s->p) {
      case '"':
        if (!skip_string(s)) return 0;
        break;
      case '{':
      case '[':
        depth++;
        s->p++;
        break;
      case '}':
      case ']':
        if (depth == 0) return 0;
        depth--;
        s->p++;
        break;
      case ',':
      case ':':
        if (depth == 0) return 0;
        s->p++;
        break;
      default: /* number, true, false, null */
        while (s->p < s->end && strchr(",:]} \t\r\n", *s->p) == NULL) s->p++;
        break;
    }
  } while (depth > 0);
  return 1;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Reads 4 hex digits at p (p + 4 <= end checked by the caller). */
static int read_hex4(const char *p, unsigned long *out) {
  unsigned long value = 0;
  int i;
  for (i = 0; i < 4; i++) {
    int digit = hex_digit(p[i]);
    if (digit < 0) return 0;
    value = value * 16u + (unsigned long)digit;
  }
  *out = value;
  return 1;
}

static size_t put_utf8(unsigned long cp, char *out) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Decodes the contents of a JSON string (between the quotes) into UTF-8.
 * out must hold 2 * len bytes. Invalid escapes and lone surrogates become
 * U+FFFD. Returns the decoded length. */
static size_t json_unescape(const char *raw, size_t len, char *out) {
  const char *p = raw;
  const char *end = raw + len;
  size_t n = 0;
  while (p < end) {
    char c = *p++;
    if (c != '\\') {
      out[n++] = c;
      continue;
    }
    if (p == end) break;
    c = *p++;
    switch (c) {
      case 'b':
        out[n++] = '\b';
        break;
      case 'f':
        out[n++] = '\f';
        break;
      case 'n':
        out[n++] = '\n';
        break;
      case 'r':
        out[n++] = '\r';
        break;
      case 't':
        out[n++] = '\t';
        break;
      case 'u': {
        unsigned long cp = 0xFFFD;
        unsigned long low;
        if (end - p >= 4 && read_hex4(p, &cp)) p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (end - p >= 6 && p[0] == '\\' && p[1] == 'u' && read_hex4(p + 2, &low) &&
              low >= 0xDC00 && low <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            p += 6;
          } else {
            cp = 0xFFFD;
          }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          cp = 0xFFFD;
        }
        n += put_utf8(cp, out + n);
        break;
      }
      default: /* '"', '\\', '/' (and anything invalid, kept as is) */
        out[n++] = c;
        break;
    }
  }
  return n;
}

/* Finds the top-level string member "name" of the JSON object in [text, end)
 * (the last one wins, as in jsonb). On success sets *raw / *raw_len to its
 * contents, escapes intact, and returns 1; returns 0 if there is none. */
static int find_name(const char *text, const char *end, const char **raw, size_t *raw_len) {
  json_scanner s;
  int found = 0;
  s.p = text;
  s.end = end;
  skip_whitespace(&s);
  if (s.p == s.end || *s.p != '{') return 0;
  s.p++;
  for (;;) {
    const char *key;
    size_t key_len;
    int is_name = 0;
    skip_whitespace(&s);
    if (s.p == s.end || *s.p != '"') return found;
    key = s.p + 1;
    if (!skip_string(&s)) return found;
    key_len = (size_t)(s.p - 1 - key);
    if (key_len <= 24) { /* "name" fully \u-escaped is 24 bytes */
      char decoded[48];
      is_name = json_unescape(key, key_len, decoded) == 4 && memcmp(decoded, "name", 4) == 0;
    }
    skip_whitespace(&s);
    if (s.p == s.end || *s.p != ':') return found;
    s.p++;
    skip_whitespace(&s);
    if (is_name && s.p < s.end && *s.p == '"') {
      const char *value = s.p + 1;
      if (!skip_string(&s)) return found;
      *raw = value;
      *raw_len = (size_t)(s.p - 1 - value);
      found = 1;
    } else if (!skip_value(&s)) {
      return found;
    }
    skip_whitespace(&s);
    if (s.p == s.end || *s.p != ',') return found;
    s.p++;
  }
}

/* ------------------------------------------------------------------------ */
/* Writing the result                                                       */
/* ------------------------------------------------------------------------ */

/* Writes s as the contents of a JSON string: escapes '"', '\\' and the control
 * characters. out must hold 6 * len bytes. Returns the length written. */
static size_t json_escape(const char *s, size_t len, char *out) {
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
  size_t i;
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      out[n++] = '\\';
      out[n++] = (char)c;
    } else if (c == '\n') {
      out[n++] = '\\';
      out[n++] = 'n';
    } else if (c == '\t') {
      out[n++] = '\\';
      out[n++] = 't';
    } else if (c < 0x20 || c == 0x7F) {
      out[n++] = '\\';
      out[n++] = 'u';
      out[n++] = '0';
      out[n++] = '0';
      out[n++] = hex[c >> 4];
      out[n++] = hex[c & 0xF];
    } else {
      out[n++] = (char)c;
    }
  }
  return n;
}

/* ------------------------------------------------------------------------ */
/* The workflow                                                             */
/* ------------------------------------------------------------------------ */

typedef struct greet_args {
  const kagzi_host *host;
  kagzi_context *ctx;
  const char *name; /* UTF-8, not NUL-terminated */
  size_t name_len;
} greet_args;

static kagzi_status write_message(const kagzi_writer *writer, const char *message,
                                  kagzi_status status) {
  writer->write(writer, message, strlen(message));
  return status;
}

/* Step "greet": writes {"greeting":"Hello, <name>!"}. */
static kagzi_status greet(void *user, const kagzi_writer *writer) {
  static const char prefix[] = "{\"greeting\":\"Hello, ";
  static const char suffix[] = "!\"}";
  const greet_args *args = (const greet_args *)user;
  size_t capacity;
  size_t len = 0;
  char *json;
  kagzi_status status;

  if (args->name_len > ((size_t)-1 - sizeof prefix - sizeof suffix) / 6) {
    return write_message(writer, "name too long", KAGZI_ERR_PERMANENT);
  }
  capacity = sizeof prefix + 6 * args->name_len + sizeof suffix;
  json = (char *)malloc(capacity);
  if (json == NULL) return write_message(writer, "out of memory", KAGZI_ERR_RETRYABLE);
  memcpy(json, prefix, sizeof prefix - 1);
  len = sizeof prefix - 1;
  len += json_escape(args->name, args->name_len, json + len);
  memcpy(json + len, suffix, sizeof suffix - 1);
  len += sizeof suffix - 1;

  status = writer->write(writer, json, len); /* the host copies it */
  if (status == KAGZI_OK) args->host->log(args->ctx, KAGZI_LOG_INFO, json, len);
  free(json);
  if (status != KAGZI_OK) return write_message(writer, "result refused", KAGZI_ERR_PERMANENT);
  return KAGZI_OK;
}

static kagzi_status hello_run(const kagzi_host *host, kagzi_context *ctx, void *user_data) {
  static const char default_name[] = "world";
  const char *input = NULL;
  size_t input_len = 0;
  const char *raw = NULL;
  size_t raw_len = 0;
  char *decoded = NULL;
  greet_args args;
  const char *out = NULL;
  size_t out_len = 0;
  kagzi_status status;
  (void)user_data;

  status = host->get_input(ctx, &input, &input_len);
  if (status != KAGZI_OK) return status;

  args.host = host;
  args.ctx = ctx;
  args.name = default_name;
  args.name_len = sizeof default_name - 1;
  if (input != NULL && find_name(input, input + input_len, &raw, &raw_len)) {
    decoded = (char *)malloc(2 * raw_len + 1);
    if (decoded == NULL) {
      static const char oom[] = "out of memory";
      host->set_error(ctx, oom, sizeof oom - 1);
      return KAGZI_ERR_RETRYABLE;
    }
    args.name = decoded;
    args.name_len = json_unescape(raw, raw_len, decoded);
  }

  /* Runs greet() the first time; on replay returns the recorded greeting. */
  status = host->step(ctx, "greet", greet, &args, &out, &out_len);
  free(decoded);
  switch (status) {
    case KAGZI_OK:
      return host->set_output(ctx, out, out_len);
    case KAGZI_ERR_RETRYABLE:
    case KAGZI_ERR_PERMANENT:
      host->set_error(ctx, out, out_len);
      return status;
    default: /* KAGZI_SUSPEND, or the run failed in the host: stop at once */
      return status;
  }
}

/* ------------------------------------------------------------------------ */
/* Descriptor and entry point                                               */
/* ------------------------------------------------------------------------ */

/* Designated initializers: fields that later ABI minors append (such as
 * kagzi_workflow.timeout_ms in 1.1) start zeroed, so this file keeps
 * compiling warning-free as the header grows. */
static const kagzi_workflow hello_workflows[] = {
    {
        .struct_size = sizeof(kagzi_workflow),
        .abi_major = KAGZI_ABI_MAJOR,
        .abi_minor = KAGZI_ABI_MINOR,
        .name = "hello",
        .version = 1,
        .run = hello_run,
    },
};

static const kagzi_plugin hello_plugin = {
    .struct_size = sizeof(kagzi_plugin),
    .abi_major = KAGZI_ABI_MAJOR,
    .abi_minor = KAGZI_ABI_MINOR,
    .name = "hello",
    .version = "1.0.0",
    .workflow_count = sizeof hello_workflows / sizeof hello_workflows[0],
    .workflows = hello_workflows,
};

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_minor; /* any 1.x host can run a 1.0 plugin */
  return host_abi_major == KAGZI_ABI_MAJOR ? &hello_plugin : NULL;
}
