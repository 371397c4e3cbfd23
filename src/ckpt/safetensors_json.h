// Internal to the safetensors module (safetensors*.c): the JSON header through cJSON.
//
// Parsing is cJSON's, made strict: a lexical pass refuses what RFC 8259 forbids and cJSON lets
// through (raw control characters, invalid UTF-8 and the escape \u0000 inside strings, bytes
// below 0x20 between tokens, numbers outside JSON's grammar such as 01 or 1.), and what a
// safetensors header never holds: numbers other than plain non-negative integers (its only
// numbers are shapes and offsets; cJSON would turn -0, 4.0 or 2e3 into integers) and nesting
// deeper than 64 levels. Keys repeated in one object are refused. Every error names the byte of
// the header where it is, or the repeated key and the object that holds it.
#ifndef SD_SAFETENSORS_JSON_H
#define SD_SAFETENSORS_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

// Length of the valid UTF-8 sequence at p (at most avail bytes), or 0 if it is not one
// (overlong forms, surrogates and code points above U+10FFFF are refused).
size_t sd_st_utf8_len(const unsigned char *p, size_t avail);

// Parses the n header bytes (hdr[n] must be '\0'): one JSON object, then only blanks. Returns
// the tree (free with cJSON_Delete), or NULL with "at byte P of N: what" in msg.
cJSON *sd_st_json_parse(const char *hdr, size_t n, char *msg, size_t msglen);

// "a string", "an array", ... for messages.
const char *sd_st_json_type_name(const cJSON *v);

// A JSON number that is a non-negative integer below 2^53, exactly: cJSON keeps numbers as
// doubles, which hold every integer below 2^53, and any larger one rounds to 2^53 or more. 0, or
// -1.
int sd_st_json_uint(const cJSON *v, uint64_t *out);

#endif
