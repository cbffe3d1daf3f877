#include "wrapper_common.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <stdint.h>
#include <vector>

// chat.h pulls in the jinja headers, whose static helpers this file does not call.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
#include "llama.cpp/common/chat.h"
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#include "llama.cpp/common/common.h"
#include "llama.cpp/common/fit.h"
#include "llama.cpp/common/json.h"
#include "llama.cpp/common/log.h"
#include "llama.cpp/common/json-schema-to-grammar.h"
#include "llama.cpp/common/speculative.h"
#include "llama.cpp/include/llama.h"
#include "wrapper_utils.h"

extern "C" llama_rs_status llama_rs_json_schema_to_grammar(
    const char * schema_json,
    bool force_gbnf,
    char ** out_grammar) {
    if (!schema_json || !out_grammar) {
        return LLAMA_RS_STATUS_INVALID_ARGUMENT;
    }

    *out_grammar = nullptr;
    try {
        const auto schema = common_json::parse(schema_json);
        const auto grammar = json_schema_to_grammar(schema, force_gbnf);
        *out_grammar = llama_rs_dup_string(grammar);
        return *out_grammar ? LLAMA_RS_STATUS_OK : LLAMA_RS_STATUS_ALLOCATION_FAILED;
    } catch (const std::exception &) {
        return LLAMA_RS_STATUS_EXCEPTION;
    }
}

extern "C" void llama_rs_string_free(char * ptr) {
    if (ptr) {
        std::free(ptr);
    }
}

extern "C" llama_rs_status llama_rs_chat_apply(
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
    char ** out_error) {
    if (!template_src || !*template_src || !bos_token || !eos_token || !template_kwargs ||
        !reasoning_format || !out_prompt || !out_info || !out_error ||
        (n_messages > 0 && (!roles || !contents))) {
        return LLAMA_RS_STATUS_INVALID_ARGUMENT;
    }
    *out_prompt = nullptr;
    *out_info = nullptr;
    *out_error = nullptr;
    // The engine's error comes back as *out_error; llama.cpp's common log would print it to
    // stderr as well, so it is paused (messages dropped) for the call.
    struct log_pause {
        log_pause() { common_log_pause(common_log_main()); }
        ~log_pause() { common_log_resume(common_log_main()); }
    } pause;
    try {
        // No model: every model fact comes from the caller, so the template is always the
        // override (the model's own text when the user gave none).
        auto tmpls = common_chat_templates_init(nullptr, template_src, bos_token, eos_token);
        common_chat_templates_inputs inputs;
        inputs.use_jinja = use_jinja;
        inputs.add_generation_prompt = add_generation_prompt;
        inputs.reasoning_format = common_reasoning_format_from_name(reasoning_format);
        // llama-server's start-up (llama-cli runs one in-process): thinking unless
        // --reasoning off, where the jinja template supports it.
        inputs.enable_thinking = use_jinja && enable_reasoning != 0 &&
                                 common_chat_templates_support_enable_thinking(tmpls.get());
        if (*template_kwargs) {
            const auto kwargs = common_json::parse(template_kwargs);
            for (const auto & item : kwargs.items()) {
                inputs.chat_template_kwargs[item.key()] = item.value().dump();
            }
        }
        // llama-server's request parsing: an "enable_thinking" kwarg overrides the default.
        const auto it = inputs.chat_template_kwargs.find("enable_thinking");
        if (it != inputs.chat_template_kwargs.end()) {
            if (it->second == "true") {
                inputs.enable_thinking = true;
            } else if (it->second == "false") {
                inputs.enable_thinking = false;
            } else if (!it->second.empty() && it->second[0] == '"') {
                throw std::invalid_argument(
                    "invalid type for \"enable_thinking\" (expected boolean, got string)");
            }
        }
        for (size_t i = 0; i < n_messages; ++i) {
            common_chat_msg msg;
            msg.role = roles[i];
            msg.content = contents[i];
            inputs.messages.push_back(std::move(msg));
        }
        const auto params = common_chat_templates_apply(tmpls.get(), inputs);
        auto info = common_json::object();
        info["enable_thinking"] = inputs.enable_thinking;
        info["supports_thinking"] = params.supports_thinking;
        info["format"] = std::string(common_chat_format_name(params.format));
        info["generation_prompt"] = params.generation_prompt;
        info["thinking_start_tag"] = params.thinking_start_tag;
        auto ends = common_json::array();
        for (const auto & t : params.thinking_end_tags) {
            ends.push_back(t);
        }
        info["thinking_end_tags"] = ends;
        info["format_id"] = static_cast<int>(params.format);
        info["parser"] = params.parser;
        *out_prompt = llama_rs_dup_string(params.prompt);
        *out_info = llama_rs_dup_string(info.dump());
        return *out_prompt && *out_info ? LLAMA_RS_STATUS_OK : LLAMA_RS_STATUS_ALLOCATION_FAILED;
    } catch (const std::exception & e) {
        *out_error = llama_rs_dup_string(e.what());
        return LLAMA_RS_STATUS_EXCEPTION;
    }
}

extern "C" llama_rs_status llama_rs_chat_parse(
    int format,
    const char * reasoning_format,
    const char * generation_prompt,
    const char * parser,
    const char * text,
    bool is_partial,
    char ** out_json,
    char ** out_error) {
    if (!reasoning_format || !generation_prompt || !parser || !text || !out_json || !out_error) {
        return LLAMA_RS_STATUS_INVALID_ARGUMENT;
    }
    *out_json = nullptr;
    *out_error = nullptr;
    struct log_pause {
        log_pause() { common_log_pause(common_log_main()); }
        ~log_pause() { common_log_resume(common_log_main()); }
    } pause;
    try {
        // As llama-cli's server parses its streamed reply (reasoning_in_content when streaming
        // with deepseek-legacy).
        common_chat_parser_params syntax;
        syntax.format = static_cast<common_chat_format>(format);
        syntax.generation_prompt = generation_prompt;
        syntax.reasoning_format = common_reasoning_format_from_name(reasoning_format);
        syntax.reasoning_in_content =
            syntax.reasoning_format == COMMON_REASONING_FORMAT_DEEPSEEK_LEGACY;
        if (*parser) {
            syntax.parser.load(parser);
        }
        const auto msg = common_chat_parse(text, is_partial, syntax);
        auto out = common_json::object();
        out["content"] = msg.content;
        out["reasoning_content"] = msg.reasoning_content;
        *out_json = llama_rs_dup_string(out.dump());
        return *out_json ? LLAMA_RS_STATUS_OK : LLAMA_RS_STATUS_ALLOCATION_FAILED;
    } catch (const std::exception & e) {
        *out_error = llama_rs_dup_string(e.what());
        return LLAMA_RS_STATUS_EXCEPTION;
    }
}

extern "C" struct llama_sampler * llama_rs_sampler_init_grammar(
    const struct llama_vocab * vocab,
    const char * grammar_str,
    const char * grammar_root) {
    try {
        return llama_sampler_init_grammar(vocab, grammar_str, grammar_root);
    } catch (...) {
        return nullptr;
    }
}

extern "C" struct llama_sampler * llama_rs_sampler_init_grammar_lazy(
    const struct llama_vocab * vocab,
    const char * grammar_str,
    const char * grammar_root,
    const char ** trigger_words,
    size_t num_trigger_words,
    const llama_token * trigger_tokens,
    size_t num_trigger_tokens) {
    try {
        std::vector<std::string> trigger_patterns;
        trigger_patterns.reserve(num_trigger_words);
        for (size_t i = 0; i < num_trigger_words; ++i) {
            const char * word = trigger_words ? trigger_words[i] : nullptr;
            if (word && word[0] != '\0') {
                trigger_patterns.push_back(regex_escape(word));
            }
        }
        std::vector<const char *> trigger_patterns_c;
        trigger_patterns_c.reserve(trigger_patterns.size());
        for (const auto & pattern : trigger_patterns) {
            trigger_patterns_c.push_back(pattern.c_str());
        }
        return llama_sampler_init_grammar_lazy_patterns(
            vocab,
            grammar_str,
            grammar_root,
            trigger_patterns_c.data(),
            trigger_patterns_c.size(),
            trigger_tokens,
            num_trigger_tokens);
    } catch (...) {
        return nullptr;
    }
}

extern "C" struct llama_sampler * llama_rs_sampler_init_grammar_lazy_patterns(
    const struct llama_vocab * vocab,
    const char * grammar_str,
    const char * grammar_root,
    const char ** trigger_patterns,
    size_t num_trigger_patterns,
    const llama_token * trigger_tokens,
    size_t num_trigger_tokens) {
    try {
        return llama_sampler_init_grammar_lazy_patterns(
            vocab,
            grammar_str,
            grammar_root,
            trigger_patterns,
            num_trigger_patterns,
            trigger_tokens,
            num_trigger_tokens);
    } catch (...) {
        return nullptr;
    }
}

extern "C" llama_rs_status llama_rs_sampler_accept(struct llama_sampler * sampler, llama_token token) {
    if (!sampler) {
        return LLAMA_RS_STATUS_INVALID_ARGUMENT;
    }
    try {
        llama_sampler_accept(sampler, token);
        return LLAMA_RS_STATUS_OK;
    } catch (const std::exception &) {
        return LLAMA_RS_STATUS_EXCEPTION;
    } catch (...) {
        return LLAMA_RS_STATUS_EXCEPTION;
    }
}

// Thin pass-through to llama.cpp's common_fit_params (a C++ symbol in libcommon).
// Returns common_params_fit_status as an int: 0 = success, 1 = failure, 2 = error.
extern "C" int llama_rs_fit_params(
    const char * path_model,
    struct llama_model_params * mparams,
    struct llama_context_params * cparams,
    float * tensor_split,
    struct llama_model_tensor_buft_override * tensor_buft_overrides,
    size_t * margins,
    uint32_t n_ctx_min,
    const void * extra,
    enum ggml_log_level log_level) {
    return static_cast<int>(common_fit_params(
        path_model,
        mparams,
        cparams,
        tensor_split,
        tensor_buft_overrides,
        margins,
        n_ctx_min,
        static_cast<const common_fit_extra_model *>(extra),
        log_level));
}

extern "C" void llama_rs_memory_breakdown_print(const struct llama_context * ctx) {
    common_memory_breakdown_print(ctx);
}

struct llama_rs_mtp_speculative {
    common_params_speculative params;
    common_speculative * spec = nullptr;
    common_batch batch;
    std::vector<llama_token> prompt;
    std::vector<llama_token> draft;
    size_t last_draft_len = 0;
    bool draft_pending = false;
};

static constexpr llama_seq_id LLAMA_RS_MTP_SEQ_ID = 0;

static bool llama_rs_mtp_batch_compatible(const struct llama_batch & batch) {
    if (batch.n_tokens <= 0 || !batch.token || batch.embd || !batch.pos || !batch.n_seq_id ||
        !batch.seq_id) {
        return false;
    }
    for (int32_t k = 0; k < batch.n_tokens; ++k) {
        if (batch.n_seq_id[k] != 1 || !batch.seq_id[k] ||
            batch.seq_id[k][0] != LLAMA_RS_MTP_SEQ_ID) {
            return false;
        }
    }
    return true;
}

static void llama_rs_assign_tokens(
    std::vector<llama_token> & dst,
    const llama_token * tokens,
    size_t count) {
    if (count == 0) {
        dst.clear();
        return;
    }
    dst.assign(tokens, tokens + count);
}

extern "C" struct llama_rs_mtp_speculative * llama_rs_mtp_speculative_init(
    struct llama_context * ctx_tgt,
    struct llama_context * ctx_dft,
    int32_t n_max,
    int32_t n_min,
    float p_min) {
    if (!ctx_tgt || !ctx_dft || n_max <= 0 || n_min < 0 || n_min > n_max) {
        return nullptr;
    }

    try {
        auto wrapper = std::make_unique<llama_rs_mtp_speculative>();
        wrapper->params.types = { COMMON_SPECULATIVE_TYPE_DRAFT_MTP };
        wrapper->params.draft.ctx_tgt = ctx_tgt;
        wrapper->params.draft.ctx_dft = ctx_dft;
        wrapper->params.draft.n_max = n_max;
        wrapper->params.draft.n_min = n_min;
        wrapper->params.draft.p_min = p_min;
        wrapper->batch = common_batch(ctx_tgt);

        wrapper->spec = common_speculative_init(wrapper->params, 1);
        if (!wrapper->spec) {
            return nullptr;
        }

        return wrapper.release();
    } catch (...) {
        return nullptr;
    }
}

extern "C" void llama_rs_mtp_speculative_free(struct llama_rs_mtp_speculative * spec) {
    if (!spec) {
        return;
    }
    if (spec->spec) {
        common_speculative_free(spec->spec);
        spec->spec = nullptr;
    }
    delete spec;
}

extern "C" llama_rs_status llama_rs_mtp_speculative_begin(
    struct llama_rs_mtp_speculative * spec,
    const llama_token * prompt_tokens,
    size_t prompt_tokens_count) {
    if (!spec || !spec->spec || (!prompt_tokens && prompt_tokens_count > 0)) {
        return LLAMA_RS_STATUS_INVALID_ARGUMENT;
    }

    try {
        llama_rs_assign_tokens(spec->prompt, prompt_tokens, prompt_tokens_count);
        spec->last_draft_len = 0;
        spec->draft_pending = false;
        common_speculative_begin(spec->spec, LLAMA_RS_MTP_SEQ_ID, spec->prompt);
        return LLAMA_RS_STATUS_OK;
    } catch (...) {
        return LLAMA_RS_STATUS_EXCEPTION;
    }
}

extern "C" llama_rs_status llama_rs_mtp_speculative_process(
    struct llama_rs_mtp_speculative * spec,
    const struct llama_batch * batch) {
    if (!spec || !spec->spec || !batch) {
        return LLAMA_RS_STATUS_INVALID_ARGUMENT;
    }
    if (!llama_rs_mtp_batch_compatible(*batch)) {
        return LLAMA_RS_STATUS_INVALID_ARGUMENT;
    }

    try {
        spec->batch.clear();
        for (int32_t k = 0; k < batch->n_tokens; ++k) {
            const bool output = batch->logits ? batch->logits[k] != 0 : k == batch->n_tokens - 1;
            spec->batch.add(batch->token[k], batch->pos[k], LLAMA_RS_MTP_SEQ_ID, output);
        }
        return common_speculative_process(spec->spec, spec->batch)
            ? LLAMA_RS_STATUS_OK
            : LLAMA_RS_STATUS_EXCEPTION;
    } catch (...) {
        return LLAMA_RS_STATUS_EXCEPTION;
    }
}

extern "C" llama_rs_status llama_rs_mtp_speculative_draft(
    struct llama_rs_mtp_speculative * spec,
    llama_pos n_past,
    llama_token id_last,
    const llama_token * prompt_tokens,
    size_t prompt_tokens_count,
    llama_token * out_tokens,
    size_t out_tokens_capacity,
    size_t * out_tokens_count) {
    if (!spec || !spec->spec || (!prompt_tokens && prompt_tokens_count > 0) ||
        !out_tokens_count || n_past < 0) {
        return LLAMA_RS_STATUS_INVALID_ARGUMENT;
    }

    try {
        if (spec->draft_pending) {
            return LLAMA_RS_STATUS_INVALID_ARGUMENT;
        }
        llama_rs_assign_tokens(spec->prompt, prompt_tokens, prompt_tokens_count);
        spec->draft.clear();
        spec->last_draft_len = 0;

        auto & params = common_speculative_get_draft_params(spec->spec, LLAMA_RS_MTP_SEQ_ID);
        params = {
            true,
            spec->params.draft.n_max,
            n_past,
            id_last,
            &spec->prompt,
            &spec->draft,
        };

        common_speculative_draft(spec->spec);

        *out_tokens_count = spec->draft.size();
        if (spec->draft.size() > out_tokens_capacity) {
            return LLAMA_RS_STATUS_ALLOCATION_FAILED;
        }
        if (!spec->draft.empty() && !out_tokens) {
            return LLAMA_RS_STATUS_INVALID_ARGUMENT;
        }
        if (!spec->draft.empty()) {
            std::memcpy(out_tokens, spec->draft.data(), spec->draft.size() * sizeof(llama_token));
        }
        spec->last_draft_len = spec->draft.size();
        spec->draft_pending = !spec->draft.empty();
        return LLAMA_RS_STATUS_OK;
    } catch (...) {
        return LLAMA_RS_STATUS_EXCEPTION;
    }
}

extern "C" llama_rs_status llama_rs_mtp_speculative_accept(
    struct llama_rs_mtp_speculative * spec,
    uint16_t n_accepted) {
    if (!spec || !spec->spec) {
        return LLAMA_RS_STATUS_INVALID_ARGUMENT;
    }
    if (!spec->draft_pending || n_accepted > spec->last_draft_len) {
        return LLAMA_RS_STATUS_INVALID_ARGUMENT;
    }

    try {
        common_speculative_accept(spec->spec, LLAMA_RS_MTP_SEQ_ID, n_accepted);
        spec->last_draft_len = 0;
        spec->draft_pending = false;
        return LLAMA_RS_STATUS_OK;
    } catch (...) {
        return LLAMA_RS_STATUS_EXCEPTION;
    }
}
