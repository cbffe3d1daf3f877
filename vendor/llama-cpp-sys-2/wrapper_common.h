#pragma once

#include "llama.cpp/include/llama.h"

#include <stdbool.h>
#include <stddef.h>

struct llama_model;
struct llama_sampler;
struct llama_rs_mtp_speculative;
struct llama_vocab;

#include "wrapper_utils.h"

#ifdef __cplusplus
extern "C" {
#endif

llama_rs_status llama_rs_json_schema_to_grammar(
    const char * schema_json,
    bool force_gbnf,
    char ** out_grammar);

struct llama_sampler * llama_rs_sampler_init_grammar(
    const struct llama_vocab * vocab,
    const char * grammar_str,
    const char * grammar_root);

struct llama_sampler * llama_rs_sampler_init_grammar_lazy(
    const struct llama_vocab * vocab,
    const char * grammar_str,
    const char * grammar_root,
    const char ** trigger_words,
    size_t num_trigger_words,
    const llama_token * trigger_tokens,
    size_t num_trigger_tokens);

struct llama_sampler * llama_rs_sampler_init_grammar_lazy_patterns(
    const struct llama_vocab * vocab,
    const char * grammar_str,
    const char * grammar_root,
    const char ** trigger_patterns,
    size_t num_trigger_patterns,
    const llama_token * trigger_tokens,
    size_t num_trigger_tokens);

llama_rs_status llama_rs_sampler_accept(struct llama_sampler * sampler, llama_token token);

// Fit model/context params to device memory (wraps llama.cpp's common_fit_params).
// Returns common_params_fit_status as an int: 0 = success, 1 = failure, 2 = error.
int llama_rs_fit_params(
    const char * path_model,
    struct llama_model_params * mparams,
    struct llama_context_params * cparams,
    float * tensor_split,
    struct llama_model_tensor_buft_override * tensor_buft_overrides,
    size_t * margins,
    uint32_t n_ctx_min,
    const void * extra,
    enum ggml_log_level log_level);

void llama_rs_memory_breakdown_print(const struct llama_context * ctx);

struct llama_rs_mtp_speculative * llama_rs_mtp_speculative_init(
    struct llama_context * ctx_tgt,
    struct llama_context * ctx_dft,
    int32_t n_max,
    int32_t n_min,
    float p_min);

void llama_rs_mtp_speculative_free(struct llama_rs_mtp_speculative * spec);

llama_rs_status llama_rs_mtp_speculative_begin(
    struct llama_rs_mtp_speculative * spec,
    const llama_token * prompt_tokens,
    size_t prompt_tokens_count);

llama_rs_status llama_rs_mtp_speculative_process(
    struct llama_rs_mtp_speculative * spec,
    const struct llama_batch * batch);

llama_rs_status llama_rs_mtp_speculative_draft(
    struct llama_rs_mtp_speculative * spec,
    llama_pos n_past,
    llama_token id_last,
    const llama_token * prompt_tokens,
    size_t prompt_tokens_count,
    llama_token * out_tokens,
    size_t out_tokens_capacity,
    size_t * out_tokens_count);

llama_rs_status llama_rs_mtp_speculative_accept(
    struct llama_rs_mtp_speculative * spec,
    uint16_t n_accepted);

void llama_rs_string_free(char * ptr);

// gemfilter: render a conversation through llama.cpp's common chat templates, as llama-cli does
// (it runs llama-server in-process: common_chat_templates_init + common_chat_templates_apply):
// the jinja engine when use_jinja, otherwise the built-in formatter. template_src is the template
// text or a built-in name (never empty); bos_token/eos_token the model's texts for them.
// enable_reasoning is --reasoning (-1 auto, 0 off, 1 on); template_kwargs a JSON object of the
// template's extra variables ("" for none), an "enable_thinking" among them overriding it as
// llama-server does; reasoning_format a --reasoning-format name. A BOS text the template writes
// stays in the prompt (the caller's tokenizer drops a doubled BOS). On success *out_prompt is
// the rendered text and *out_info a JSON object: enable_thinking, supports_thinking, format,
// generation_prompt, thinking_start_tag, thinking_end_tags, format_id and parser (for
// llama_rs_chat_parse). On an exception *out_error is its message. Free every string with
// llama_rs_string_free.
llama_rs_status llama_rs_chat_apply(
    const char * template_src,
    const char * bos_token,
    const char * eos_token,
    const char * const * roles,
    const char * const * contents,
    size_t n_messages,
    bool add_generation_prompt,
    bool use_jinja,
    int enable_reasoning,
    const char * template_kwargs,
    const char * reasoning_format,
    char ** out_prompt,
    char ** out_info,
    char ** out_error);

// gemfilter: an answer's text parsed as llama-cli's server parses a reply (common_chat_parse),
// with format_id, generation_prompt and parser from llama_rs_chat_apply's info and a
// --reasoning-format name; is_partial while it is still being generated. On success *out_json
// is a JSON object: content, reasoning_content. Free it with llama_rs_string_free.
llama_rs_status llama_rs_chat_parse(
    int format,
    const char * reasoning_format,
    const char * generation_prompt,
    const char * parser,
    const char * text,
    bool is_partial,
    char ** out_json,
    char ** out_error);

#ifdef __cplusplus
}
#endif
