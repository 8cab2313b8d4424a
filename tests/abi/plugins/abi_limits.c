/*
 * abi_limits.so -- workflows that load fine and then hand the host more
 * than max_payload_bytes. abi_test runs kagzid with --max-payload-bytes 4096
 * (ABI_LIMIT below); each oversized payload must be refused with an error
 * naming the limit, and the run fail with it:
 *
 *   abi_step_result_too_big  a step writes a result of 4097 bytes, in pieces
 *                            (the writer refuses the piece that crosses the
 *                            limit; the step is recorded FAILED)
 *   abi_step_result_at_limit a step writes exactly 4096 bytes: accepted
 *   abi_output_too_big       set_output with 4097 bytes
 *   abi_child_input_too_big  call_child with an input of 4097 bytes
 *
 * The workflows ignore the refusals and claim success; the host fails the
 * runs anyway. No state is shared between runs.
 */
#include <stdlib.h>
#include <string.h>

#include "abi_plugin.h"

#define ABI_LIMIT 4096

/* A JSON string of exactly `size` bytes: '"', size - 2 'x', '"'. */
static char *json_string_of_size(size_t size) {
  char *text = (char *)malloc(size);
  if (text == NULL) return NULL;
  memset(text, 'x', size);
  text[0] = '"';
  text[size - 1] = '"';
  return text;
}

/* Writes a JSON string of *(size_t *)user bytes, 1000 bytes at a time. */
static kagzi_status sized_step(void *user, const kagzi_writer *result) {
  const size_t size = *(const size_t *)user;
  char *text = json_string_of_size(size);
  size_t done = 0;
  kagzi_status status = KAGZI_OK;
  if (text == NULL) return KAGZI_ERR_RETRYABLE;
  while (done < size && status == KAGZI_OK) {
    size_t piece = size - done < 1000 ? size - done : 1000;
    status = result->write(result, text + done, piece);
    done += piece;
  }
  free(text);
  return KAGZI_OK; /* even when the writer refused a piece */
}

static kagzi_status pass_error(const kagzi_host *host, kagzi_context *ctx, kagzi_status status,
                               const char *out, size_t out_len) {
  if ((status == KAGZI_ERR_PERMANENT || status == KAGZI_ERR_RETRYABLE) && out != NULL) {
    host->set_error(ctx, out, out_len);
  }
  return status;
}

static kagzi_status step_of_size(const kagzi_host *host, kagzi_context *ctx, size_t size) {
  const char *out = NULL;
  size_t out_len = 0;
  kagzi_status status = host->step(ctx, "sized", sized_step, &size, &out, &out_len);
  if (status != KAGZI_OK) return pass_error(host, ctx, status, out, out_len);
  return host->set_output(ctx, "\"fits\"", 6);
}

static kagzi_status step_result_too_big_run(const kagzi_host *host, kagzi_context *ctx,
                                            void *user) {
  (void)user;
  return step_of_size(host, ctx, ABI_LIMIT + 1);
}

static kagzi_status step_result_at_limit_run(const kagzi_host *host, kagzi_context *ctx,
                                             void *user) {
  (void)user;
  return step_of_size(host, ctx, ABI_LIMIT);
}

static kagzi_status output_too_big_run(const kagzi_host *host, kagzi_context *ctx, void *user) {
  char *text = json_string_of_size(ABI_LIMIT + 1);
  (void)user;
  if (text == NULL) return KAGZI_ERR_RETRYABLE;
  (void)host->set_output(ctx, text, ABI_LIMIT + 1); /* refused: KAGZI_ERR_MISUSE */
  free(text);
  return KAGZI_OK;
}

static kagzi_status child_input_too_big_run(const kagzi_host *host, kagzi_context *ctx,
                                            void *user) {
  char *text = json_string_of_size(ABI_LIMIT + 1);
  const char *out = NULL;
  size_t out_len = 0;
  kagzi_status status;
  (void)user;
  if (text == NULL) return KAGZI_ERR_RETRYABLE;
  status = host->call_child(ctx, "kid", "abi_good", text, ABI_LIMIT + 1, &out, &out_len);
  free(text);
  if (status == KAGZI_SUSPEND) return status;
  return KAGZI_OK; /* ignores the refusal */
}

static const kagzi_workflow workflows[] = {
    ABI_WORKFLOW("abi_step_result_too_big", 1, step_result_too_big_run),
    ABI_WORKFLOW("abi_step_result_at_limit", 1, step_result_at_limit_run),
    ABI_WORKFLOW("abi_output_too_big", 1, output_too_big_run),
    ABI_WORKFLOW("abi_child_input_too_big", 1, child_input_too_big_run),
};
static const kagzi_plugin plugin = ABI_PLUGIN("abi_limits", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_minor;
  return host_abi_major == KAGZI_ABI_MAJOR ? &plugin : NULL;
}
