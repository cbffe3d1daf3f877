//! llama-cli's flags (same names and defaults where they exist) plus the GemFilter ones.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::prompt::Protect;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// `-fa`'s values as llama.cpp reads them: its truthy, falsy and auto words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOffAuto {
    #[value(aliases = ["1", "true", "enabled"])]
    On,
    #[value(aliases = ["0", "false", "disabled"])]
    Off,
    #[value(alias = "-1")]
    Auto,
}

/// `--rope-scaling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RopeScaling {
    None,
    Linear,
    Yarn,
}

/// `-lm`: how the model file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadMode {
    /// Memory-map it (llama.cpp's default).
    Auto,
    /// Ordinary reads.
    None,
    Mmap,
    /// Memory-map and lock in RAM (the lock is not applied: a notice says so).
    Mlock,
    #[value(name = "mmap+mlock")]
    MmapMlock,
    /// Direct I/O (read here with ordinary reads).
    Dio,
}

/// Model and context flags, shared by every mode that loads a model.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model path (GGUF).
    #[arg(
        short = 'm',
        long = "model",
        value_name = "FNAME",
        required_unless_present_any = ["list_devices", "hf_repo"]
    )]
    pub model: Option<PathBuf>,

    /// The model USER/MODEL[:QUANT] from llama.cpp's download cache, the file llama.cpp would
    /// pick (docs/usage.md says where the cache is and which file). Nothing is downloaded.
    #[arg(long = "hf-repo", value_name = "<user>/<model>[:quant]")]
    pub hf_repo: Option<String>,

    /// With -hf: this file of the repository instead.
    #[arg(long = "hf-file", value_name = "FILE")]
    pub hf_file: Option<String>,

    /// List the models in llama.cpp's download cache and exit.
    #[arg(long = "cache-list")]
    pub cache_list: bool,

    /// Context size; 0 = what the prompt and -n need, up to the model's training context.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 0, value_name = "N")]
    pub ctx_size: u32,

    /// Layers to offload to the GPU: a number, "auto" or "all" (all by default).
    #[arg(
        long = "n-gpu-layers",
        visible_alias = "gpu-layers",
        default_value = "auto",
        value_name = "N"
    )]
    pub n_gpu_layers: String,

    /// Read the model with ordinary reads instead of memory-mapping it (llama-cli's flag).
    /// On the H100 measurements it made GemFilter's model loads slower (1.8 s vs 1.2 s).
    #[arg(long = "no-mmap")]
    pub no_mmap: bool,

    /// How the model file is read (-lm): auto or mmap (memory-mapped), none or dio (ordinary
    /// reads), mlock or mmap+mlock (memory-mapped; the RAM lock is not applied, with a notice).
    #[arg(long = "load-mode", value_enum, value_name = "MODE")]
    pub load_mode: Option<LoadMode>,

    /// Flash attention: on, off or auto (also llama.cpp's 1/0/-1, true/false,
    /// enabled/disabled).
    #[arg(
        long = "flash-attn",
        value_enum,
        default_value = "auto",
        value_name = "on|off|auto"
    )]
    pub flash_attn: OnOffAuto,

    /// rope frequency scaling method: none, linear or yarn (default: the model's).
    #[arg(long = "rope-scaling", value_enum, value_name = "{none,linear,yarn}")]
    pub rope_scaling: Option<RopeScaling>,

    /// rope context scaling factor: the context grows by N (sets --rope-freq-scale to 1/N).
    #[arg(
        long = "rope-scale",
        value_name = "N",
        conflicts_with = "rope_freq_scale"
    )]
    pub rope_scale: Option<f32>,

    /// rope base frequency, used by NTK-aware scaling (default: the model's).
    #[arg(long = "rope-freq-base", value_name = "N")]
    pub rope_freq_base: Option<f32>,

    /// rope frequency scaling factor: the context grows by 1/N (default: the model's).
    #[arg(long = "rope-freq-scale", value_name = "N")]
    pub rope_freq_scale: Option<f32>,

    /// yarn: the model's original context size (default: its training context).
    #[arg(long = "yarn-orig-ctx", value_name = "N")]
    pub yarn_orig_ctx: Option<u32>,

    /// yarn extrapolation mix factor (-1 = the model's, 0.0 = full interpolation).
    #[arg(
        long = "yarn-ext-factor",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub yarn_ext_factor: Option<f32>,

    /// yarn magnitude scaling factor (-1 = the model's).
    #[arg(
        long = "yarn-attn-factor",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub yarn_attn_factor: Option<f32>,

    /// yarn low correction dimension, beta slow (-1 = the model's).
    #[arg(
        long = "yarn-beta-slow",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub yarn_beta_slow: Option<f32>,

    /// yarn high correction dimension, beta fast (-1 = the model's).
    #[arg(
        long = "yarn-beta-fast",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub yarn_beta_fast: Option<f32>,

    /// Keep the KV cache in host memory instead of with its layers on the GPU (-nkvo).
    #[arg(long = "no-kv-offload")]
    pub no_kv_offload: bool,

    /// KV cache type for K (f32, f16, bf16, `q8_0`, `q4_0`, `q4_1`, `iq4_nl`, `q5_0`, `q5_1`).
    #[arg(long = "cache-type-k", default_value = "f16", value_name = "TYPE")]
    pub cache_type_k: String,

    /// KV cache type for V.
    #[arg(long = "cache-type-v", default_value = "f16", value_name = "TYPE")]
    pub cache_type_v: String,

    /// Threads for generation (default: all cores).
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<i32>,

    /// Threads for prompt processing (default: same as --threads).
    #[arg(long = "threads-batch", value_name = "N")]
    pub threads_batch: Option<i32>,

    /// Logical maximum batch size.
    #[arg(
        short = 'b',
        long = "batch-size",
        default_value_t = 2048,
        value_name = "N"
    )]
    pub batch_size: u32,

    /// Physical maximum batch size.
    #[arg(long = "ubatch-size", default_value_t = 512, value_name = "N")]
    pub ubatch_size: u32,

    /// How to split the model over several devices (-sm): none (one device, -mg), layer
    /// (layers and their KV cache; llama.cpp's default) or row (also matrix rows, CUDA).
    #[arg(long = "split-mode", value_enum, value_name = "none|layer|row")]
    pub split_mode: Option<crate::engine::SplitMode>,

    /// Share of the model per device (-ts), comma-separated, e.g. 3,1 (in the order of the
    /// devices used: --rpc servers first, then local GPUs, or as -dev lists them).
    #[arg(long = "tensor-split", value_name = "N0,N1,...")]
    pub tensor_split: Option<String>,

    /// The device that holds the whole model with -sm none (-mg), counted from 0.
    #[arg(long = "main-gpu", value_name = "INDEX", allow_negative_numbers = true)]
    pub main_gpu: Option<i32>,

    /// Devices to offload to (-dev), comma-separated names as --list-devices prints them
    /// (CUDA0, RPC0, ...); "none" keeps everything on the CPU. Default: every GPU and RPC device.
    #[arg(long = "device", value_name = "LIST")]
    pub device: Option<String>,

    /// Print the devices llama.cpp can use (with --rpc, the remote ones too) and exit.
    #[arg(long = "list-devices")]
    pub list_devices: bool,

    /// RPC servers to offload layers to, comma-separated HOST:PORT (each running
    /// `gemfilter rpc-server` or llama.cpp's rpc-server). Their devices come first in the
    /// device list. The protocol has no authentication: use trusted networks only.
    #[arg(long = "rpc", value_name = "SERVERS")]
    pub rpc: Option<String>,

    /// Print llama.cpp's own log to stderr.
    #[arg(short = 'v', long = "verbose", visible_alias = "log-verbose")]
    pub verbose: bool,

    /// Silence notices (errors are still printed).
    #[arg(long = "log-disable")]
    pub log_disable: bool,

    /// Log to FNAME as well (created or emptied): gemfilter's notices, and llama.cpp's log
    /// with -v.
    #[arg(long = "log-file", value_name = "FNAME")]
    pub log_file: Option<PathBuf>,

    /// Log lines as JSON objects, one per line, on stdout (llama.cpp's format).
    #[arg(long = "log-jsonl", overrides_with = "no_log_jsonl")]
    pub log_jsonl: bool,

    /// Log lines as plain text on stderr (the default).
    #[arg(long = "no-log-jsonl")]
    pub no_log_jsonl: bool,

    /// Write each prompt sent to the model to PATH/<milliseconds>.txt (PATH created if
    /// missing).
    #[arg(long = "log-prompts-dir", value_name = "PATH")]
    pub log_prompts_dir: Option<PathBuf>,

    /// Low-rank adapter GGUF applied at scale 1 (comma-separated or repeated for several); the
    /// filter pass then runs on the full model with the adapter.
    #[arg(long = "lora", value_name = "FNAME")]
    pub lora: Vec<String>,

    /// Low-rank adapters with their scales: FNAME:SCALE,...
    #[arg(long = "lora-scaled", value_name = "FNAME:SCALE,...")]
    pub lora_scaled: Vec<String>,

    /// Control vector GGUF added to the hidden state at strength 1 (comma-separated or repeated
    /// for several, summed); the filter pass adds it too.
    #[arg(long = "control-vector", value_name = "FNAME")]
    pub control_vector: Vec<String>,

    /// Control vectors with their strengths: FNAME:SCALE,...
    #[arg(long = "control-vector-scaled", value_name = "FNAME:SCALE,...")]
    pub control_vector_scaled: Vec<String>,

    /// Layers the control vectors apply to, START and END inclusive (default: 1 to the last).
    #[arg(long = "control-vector-layer-range", value_name = "START END")]
    pub control_vector_layer_range: Option<String>,

    /// Override model metadata: KEY=TYPE:VALUE,... with TYPE int, float, bool or str (e.g.
    /// `tokenizer.ggml.add_bos_token=bool:false`); the filter pass's model too.
    #[arg(long = "override-kv", value_name = "KEY=TYPE:VALUE,...")]
    pub override_kv: Vec<String>,

    /// Check the model's tensor data for invalid values (NaN, inf, bad quant blocks) on load.
    #[arg(long = "check-tensors")]
    pub check_tensors: bool,

    /// Print a bash completion script for gemfilter and exit (`source <(gemfilter
    /// --completion-bash)`).
    #[arg(long = "completion-bash")]
    pub completion_bash: bool,
}

/// Prompt flags.
#[derive(Debug, Clone, Args)]
pub struct PromptArgs {
    /// The question or instruction (kept whole by the filter).
    #[arg(short = 'p', long = "prompt", value_name = "PROMPT")]
    pub prompt: Option<String>,

    /// File with the long context; with -p the user turn is the file, a blank line, then -p.
    #[arg(short = 'f', long = "file", value_name = "FNAME")]
    pub file: Option<PathBuf>,

    /// System prompt.
    #[arg(long = "system-prompt", value_name = "PROMPT")]
    pub system_prompt: Option<String>,

    /// A file holding the system prompt (-sysf).
    #[arg(
        long = "system-prompt-file",
        value_name = "FNAME",
        conflicts_with = "system_prompt"
    )]
    pub system_prompt_file: Option<PathBuf>,

    /// Print special tokens (end-of-turn markers and the like) in the answer (-sp).
    #[arg(long = "special")]
    pub special: bool,

    /// Built-in chat template name to use instead of the model's (e.g. chatml, llama3).
    #[arg(long = "chat-template", value_name = "JINJA_TEMPLATE")]
    pub chat_template: Option<String>,

    /// A file holding the chat template (jinja text, or a template llama.cpp recognises).
    #[arg(
        long = "chat-template-file",
        value_name = "JINJA_TEMPLATE_FILE",
        conflicts_with = "chat_template"
    )]
    pub chat_template_file: Option<PathBuf>,

    /// Apply the chat template with llama.cpp's jinja engine, as its tools do, instead of its
    /// built-in formatter (which recognises common templates only).
    #[arg(long = "jinja", overrides_with = "no_jinja")]
    pub jinja: bool,

    /// Use the built-in formatter (the default).
    #[arg(long = "no-jinja", overrides_with = "jinja")]
    pub no_jinja: bool,

    /// Thinking in the chat (-rea): on, off or auto (the template's default); off sets the
    /// template's `enable_thinking` to false.
    #[arg(long = "reasoning", value_enum, value_name = "on|off|auto")]
    pub reasoning: Option<OnOffAuto>,

    /// Extra variables for the jinja chat template: a JSON object of their values.
    #[arg(long = "chat-template-kwargs", value_name = "STRING")]
    pub chat_template_kwargs: Option<String>,

    /// How the answer's thinking is told apart: none, auto, deepseek (the default) or
    /// deepseek-legacy.
    #[arg(long = "reasoning-format", value_name = "FORMAT")]
    pub reasoning_format: Option<String>,

    /// The template's `reasoning_effort` (default: the template's own).
    #[arg(long = "reasoning-effort", value_name = "LEVEL")]
    pub reasoning_effort: Option<String>,

    /// Thinking tokens allowed: -1 unrestricted (the default). Not enforced here: a budget is
    /// taken with a template that never thinks, refused with one that does.
    #[arg(
        long = "reasoning-budget",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub reasoning_budget: Option<i32>,

    /// Text llama.cpp injects before the end of thinking when the budget runs out (no budget is
    /// enforced here).
    #[arg(long = "reasoning-budget-message", value_name = "MESSAGE")]
    pub reasoning_budget_message: Option<String>,

    /// The template's `preserve_reasoning`: keep earlier answers' thinking in the history.
    #[arg(long = "reasoning-preserve", overrides_with = "no_reasoning_preserve")]
    pub reasoning_preserve: bool,

    /// The template's `preserve_reasoning` false.
    #[arg(long = "no-reasoning-preserve", overrides_with = "reasoning_preserve")]
    pub no_reasoning_preserve: bool,

    /// Raw completion: no chat template (llama-completion's habit).
    #[arg(long = "no-conversation")]
    pub no_conversation: bool,

    /// Conversation mode (-cnv): after -p (optional), questions about the -f document come one
    /// per line from standard input until EOF or /exit; the document is filtered once and each
    /// question selects its own tokens. The default with a chat template when standard input is
    /// a terminal; -st answers one turn. Keeps the filter model (with the document's KV for layers
    /// 0..r) and the full model resident: 14.8 GB vs 21.8 GB for llama.cpp keeping the whole KV
    /// cache, a 4-bit 8B model at 128K on an H200; a follow-up's first token 0.55 s.
    #[arg(long = "conversation", conflicts_with = "no_conversation")]
    pub conversation: bool,

    /// Save the -f document's filter state (the filter layers' KV and kept keys) to FNAME after
    /// the first filter pass, and load it instead of filtering when it belongs to the same model
    /// and document (a conversation or one answer); a mismatch or damage is rebuilt with a notice.
    #[arg(long = "prompt-cache", value_name = "FNAME")]
    pub prompt_cache: Option<PathBuf>,

    /// Use the --prompt-cache file but never write it (a missing one is not created).
    #[arg(long = "prompt-cache-ro")]
    pub prompt_cache_ro: bool,

    /// Save the prompt and the generated answer to the --prompt-cache file as well, so a later
    /// prompt that goes on from them is filtered only from where it differs (one answer).
    #[arg(long = "prompt-cache-all")]
    pub prompt_cache_all: bool,

    /// Write the conversation to FNAME as llama-cli does: "User:" and "Assistant:" blocks.
    #[arg(short = 'o', long = "output-file", value_name = "FNAME")]
    pub output_file: Option<PathBuf>,

    /// Process escapes in the prompt (\n, \t, \", ...); on by default as in llama-cli.
    #[arg(short = 'e', long = "escape", overrides_with = "no_escape")]
    pub escape: bool,

    /// Do not process escape sequences.
    #[arg(long = "no-escape")]
    pub no_escape: bool,
}

/// Sampling and generation flags.
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Tokens to predict (-1 = until end of generation or a full context).
    #[arg(short = 'n', long = "n-predict", visible_alias = "predict", default_value_t = -1, allow_negative_numbers = true, value_name = "N")]
    pub n_predict: i32,

    /// Temperature (≤ 0: greedy).
    #[arg(long = "temp", default_value_t = 0.8, value_name = "N")]
    pub temp: f32,

    /// Top-k sampling (0 = disabled).
    #[arg(long = "top-k", default_value_t = 40, value_name = "N")]
    pub top_k: i32,

    /// Top-p sampling (1.0 = disabled).
    #[arg(long = "top-p", default_value_t = 0.95, value_name = "N")]
    pub top_p: f32,

    /// Min-p sampling (0.0 = disabled).
    #[arg(long = "min-p", default_value_t = 0.05, value_name = "N")]
    pub min_p: f32,

    /// Penalise repeated tokens (1.0 = disabled).
    #[arg(long = "repeat-penalty", default_value_t = 1.0, value_name = "N")]
    pub repeat_penalty: f32,

    /// Last n tokens considered for the penalty (0 = disabled).
    #[arg(
        long = "repeat-last-n",
        default_value_t = 64,
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub repeat_last_n: i32,

    /// RNG seed (-1 = random).
    #[arg(short = 's', long = "seed", default_value_t = -1, allow_negative_numbers = true, value_name = "SEED")]
    pub seed: i64,

    /// Stop when the output ends with this text (repeatable).
    #[arg(short = 'r', long = "reverse-prompt", value_name = "PROMPT")]
    pub reverse_prompt: Vec<String>,

    /// When the context is full, drop half of what follows the --keep tokens and go on
    /// generating (llama.cpp's context shift); without it generation stops there.
    #[arg(long = "context-shift", overrides_with = "no_context_shift")]
    pub context_shift: bool,

    /// Stop generating when the context is full (the default).
    #[arg(long = "no-context-shift", overrides_with = "context_shift")]
    pub no_context_shift: bool,

    /// Prompt tokens kept when the context shifts, after the BOS token (-1 = the whole prompt).
    #[arg(
        long = "keep",
        default_value_t = 0,
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub keep: i32,

    /// Never stop at an end-of-generation token: as in llama.cpp, they get a -inf logit bias
    /// (when the vocabulary has an EOS token), so none is sampled.
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,

    /// Do not echo the prompt in raw (-no-cnv) mode.
    #[arg(long = "no-display-prompt", overrides_with = "display_prompt")]
    pub no_display_prompt: bool,

    /// Echo the prompt in raw (-no-cnv) mode (the default).
    #[arg(long = "display-prompt", overrides_with = "no_display_prompt")]
    pub display_prompt: bool,

    /// Samplers in order, separated by ';' (by default `penalties;dry;top_n_sigma;top_k;typ_p;`
    /// `top_p;min_p;xtc;temperature`; llama.cpp's aliases such as top-k or temp too).
    #[arg(long = "samplers", value_name = "SAMPLERS")]
    pub samplers: Option<String>,

    /// Samplers in order as one letter each (e=penalties d=dry s=top-n-sigma k=top-k
    /// y=typical p=top-p m=min-p x=xtc t=temperature; default edskypmxt).
    #[arg(long = "sampler-seq", value_name = "SEQUENCE")]
    pub sampler_seq: Option<String>,

    /// Top-n-sigma sampling (-1 = disabled).
    #[arg(long = "top-nsigma", default_value_t = -1.0, allow_negative_numbers = true, value_name = "N")]
    pub top_nsigma: f32,

    /// XTC probability (0.0 = disabled).
    #[arg(long = "xtc-probability", default_value_t = 0.0, value_name = "N")]
    pub xtc_probability: f32,

    /// XTC threshold (above 0.5 disables XTC).
    #[arg(long = "xtc-threshold", default_value_t = 0.1, value_name = "N")]
    pub xtc_threshold: f32,

    /// Locally typical sampling, parameter p (1.0 = disabled).
    #[arg(long = "typical", default_value_t = 1.0, value_name = "N")]
    pub typical: f32,

    /// Presence penalty (0.0 = disabled).
    #[arg(
        long = "presence-penalty",
        default_value_t = 0.0,
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub presence_penalty: f32,

    /// Frequency penalty (0.0 = disabled).
    #[arg(
        long = "frequency-penalty",
        default_value_t = 0.0,
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub frequency_penalty: f32,

    /// DRY multiplier (0.0 = disabled).
    #[arg(long = "dry-multiplier", default_value_t = 0.0, value_name = "N")]
    pub dry_multiplier: f32,

    /// DRY base (values below 1.0 keep the default, as in llama.cpp).
    #[arg(long = "dry-base", default_value_t = 1.75, value_name = "N")]
    pub dry_base: f32,

    /// DRY allowed length: repetitions longer than this are penalised.
    #[arg(
        long = "dry-allowed-length",
        default_value_t = 2,
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub dry_allowed_length: i32,

    /// Tokens DRY scans for repetitions (0 = disabled).
    #[arg(
        long = "dry-penalty-last-n",
        default_value_t = 64,
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub dry_penalty_last_n: i32,

    /// DRY sequence breaker (repeatable; replaces the defaults '\n', ':', '"', '*'; "none"
    /// for none).
    #[arg(long = "dry-sequence-breaker", value_name = "STRING", action = clap::ArgAction::Append)]
    pub dry_sequence_breaker: Vec<String>,

    /// Dynamic temperature range (0.0 = disabled).
    #[arg(long = "dynatemp-range", default_value_t = 0.0, value_name = "N")]
    pub dynatemp_range: f32,

    /// Dynamic temperature exponent.
    #[arg(long = "dynatemp-exp", default_value_t = 1.0, value_name = "N")]
    pub dynatemp_exp: f32,

    /// Mirostat sampling (0 = disabled, 1 = Mirostat, 2 = Mirostat 2.0); replaces the sampler
    /// chain except the temperature.
    #[arg(long = "mirostat", default_value_t = 0, value_name = "N")]
    pub mirostat: i32,

    /// Mirostat learning rate, eta.
    #[arg(long = "mirostat-lr", default_value_t = 0.1, value_name = "N")]
    pub mirostat_lr: f32,

    /// Mirostat target entropy, tau.
    #[arg(long = "mirostat-ent", default_value_t = 5.0, value_name = "N")]
    pub mirostat_ent: f32,

    /// adaptive-p: select tokens near this probability (0.0 to 1.0; negative = disabled); it
    /// draws the token in place of the seeded draw when --samplers names `adaptive_p`.
    #[arg(
        long = "adaptive-target",
        default_value_t = -1.0,
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub adaptive_target: f32,

    /// adaptive-p: decay of the target's adaptation (0.0 to 0.99; lower reacts faster).
    #[arg(long = "adaptive-decay", default_value_t = 0.9, value_name = "N")]
    pub adaptive_decay: f32,

    /// Logit bias TOKEN_ID(+/-)BIAS, e.g. 15043+1 (repeatable).
    #[arg(long = "logit-bias", value_name = "TOKEN_ID(+/-)BIAS", action = clap::ArgAction::Append)]
    pub logit_bias: Vec<String>,

    /// GBNF grammar the answer must follow.
    #[arg(
        long = "grammar",
        value_name = "GRAMMAR",
        conflicts_with = "grammar_file"
    )]
    pub grammar: Option<String>,

    /// File holding the GBNF grammar.
    #[arg(long = "grammar-file", value_name = "FNAME", conflicts_with_all = ["json_schema", "json_schema_file"])]
    pub grammar_file: Option<PathBuf>,

    /// JSON schema the answer must follow (-j), e.g. '{"type": "object"}'; llama.cpp turns it
    /// into a grammar.
    #[arg(long = "json-schema", value_name = "SCHEMA", conflicts_with_all = ["grammar", "json_schema_file"])]
    pub json_schema: Option<String>,

    /// File holding the JSON schema (-jf).
    #[arg(
        long = "json-schema-file",
        value_name = "FILE",
        conflicts_with = "grammar"
    )]
    pub json_schema_file: Option<PathBuf>,

    /// Print timings to stderr at the end.
    #[arg(long = "perf", overrides_with = "no_perf")]
    pub perf: bool,

    /// Do not print timings.
    #[arg(long = "no-perf")]
    pub no_perf: bool,
}

/// GemFilter's own flags.
#[derive(Debug, Clone, Args)]
pub struct GemArgs {
    /// GemFilter on (filter pass, keep top-k tokens, answer from those) or off (full prompt).
    #[arg(long = "gem", value_enum, default_value = "on")]
    pub gem: OnOff,

    /// A model with no preset: calibrate its filter layer and scoring on first use and store
    /// them in the user presets file (auto), use the uncalibrated fallback layer (off), or
    /// calibrate again even if a preset exists (force). Seconds on a GPU; on a CPU about a
    /// minute for a 0.5B model.
    #[arg(long = "gem-calibrate", value_enum, default_value = "auto")]
    pub gem_calibrate: Calibrate,

    /// Filter layer r (0-based); default from models.toml or the fallback rule.
    #[arg(long = "gem-layer", value_name = "R")]
    pub gem_layer: Option<usize>,

    /// Prompt tokens to keep (default 1024, or the model's preset).
    #[arg(long = "gem-topk", value_name = "K")]
    pub gem_topk: Option<usize>,

    /// What is always kept: "all" = template, system prompt and -p text; "none" = the reference.
    #[arg(long = "gem-protect", value_enum, default_value = "all")]
    pub gem_protect: Protect,

    /// Token scoring: reference (sum over heads of q·k of the last token), head-softmax, or
    /// window-softmax (softmax of the last W queries, SnapKV-style), written as one value with
    /// its window and pooling kernel: `window-softmax:32+pool15`.
    #[arg(long = "gem-scoring", value_name = "SCORING")]
    pub gem_scoring: Option<String>,

    /// Query window for window-softmax (overrides the one in --gem-scoring or the preset).
    #[arg(long = "gem-window", value_name = "W")]
    pub gem_window: Option<usize>,

    /// Run the filter pass on a cached copy of the model cut to layers 0..=r (on), so the
    /// later layers' weights and KV cache are never allocated; or on the full model (off).
    #[arg(long = "gem-prefix", value_enum, default_value = "on")]
    pub gem_prefix: OnOff,

    /// Average-pooling kernel over token scores (odd, at most the prompt length; 5 in the
    /// reference; overrides the one in --gem-scoring or the preset).
    #[arg(long = "gem-pool", value_name = "K")]
    pub gem_pool: Option<usize>,

    /// Use GemFilter only for prompts of at least N tokens; shorter ones are answered from the
    /// whole prompt, with a notice. Default: 0 on the CPU; on a GPU (-ngl > 0) the length below
    /// which the filter pass and its model loads were measured to cost more than they save.
    #[arg(long = "gem-min-tokens", value_name = "N")]
    pub gem_min_tokens: Option<usize>,

    /// Physical batch size of the filter pass (default: -ub). Larger ubatches amortise the
    /// per-ubatch synchronisation the capture needs.
    #[arg(long = "gem-ubatch", value_name = "N")]
    pub gem_ubatch: Option<u32>,

    /// Debug: where the filter pass reads layer r's keys: auto (KV cache for the prefix model
    /// on a GPU, per ubatch with early exit otherwise), ubatch or cache.
    #[arg(long = "gem-k-source", value_enum, default_value = "auto", hide = true)]
    pub gem_k_source: KSourceArg,

    /// Where layer r's token scores are computed: auto (on the GPU that holds the KV cache, when
    /// the filter pass reads keys from the cache; on the host otherwise), host, or graph (ggml on
    /// the cache's device, the CPU included).
    #[arg(long = "gem-score-on", value_enum, default_value = "auto", hide = true)]
    pub gem_score_on: ScoreOnArg,

    /// Debug: compute every layer in the filter pass (no early exit).
    #[arg(long = "gem-no-early-exit", hide = true)]
    pub gem_no_early_exit: bool,

    /// Draft selection: a smaller model with the same tokenizer (e.g. Qwen2.5-0.5B for
    /// Qwen2.5-7B) runs the filter pass and picks the tokens; the target (-m) only re-runs them
    /// and answers. The draft uses its own preset or self-calibrated layer and scoring.
    #[arg(long = "gem-draft", value_name = "FNAME")]
    pub gem_draft: Option<PathBuf>,

    /// The draft's filter layer (0-based); its last layer means its whole prompt pass.
    #[arg(long = "gem-draft-layer", value_name = "R")]
    pub gem_draft_layer: Option<usize>,

    /// Positions of the selected tokens in the re-run: compact (0..k-1, GemFilter's) or
    /// original (where they stood in the prompt, SpecPrefill's).
    #[arg(long = "gem-positions", value_enum, default_value = "compact")]
    pub gem_positions: crate::settings::Positions,

    /// Devices for the filter pass (the prefix or draft model), as -dev takes them, when they
    /// should differ from the full model's: e.g. the small prefix model on one card (or "none":
    /// on the CPU) while the full model is split over several. Default: the same as -dev.
    #[arg(long = "gem-device", value_name = "LIST")]
    pub gem_device: Option<String>,

    /// Print the selected text to stderr, runs separated by " [...] ".
    #[arg(long = "gem-show")]
    pub gem_show: bool,

    /// Print one JSON object at the end (answer, counts, layer, k, ranges, timings, memory)
    /// instead of streaming the answer.
    #[arg(long = "json")]
    pub json: bool,
}

/// The default mode: answer one prompt, like `llama-cli -no-cnv`/`-st`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub prompt: PromptArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub gem: GemArgs,
}

/// `--gem-calibrate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Calibrate {
    Auto,
    Off,
    Force,
}

/// `--gem-score-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScoreOnArg {
    Auto,
    Host,
    Graph,
}

/// `--gem-k-source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KSourceArg {
    Auto,
    Ubatch,
    Cache,
}
