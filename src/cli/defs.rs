//! Every option llama.cpp's `common/arg.cpp` gives llama-cli, defined once: all its names
//! (long, short and multi-letter single-dash ones such as `-ngl`, `-co`, `-hf`), its negations,
//! whether it takes a value, its `LLAMA_ARG_*` environment variable and what gemfilter does with
//! it: parse it into a clap argument (which carries the type, default and help), accept it as
//! having no effect on the answer (saying so once, or documented here for display-only
//! options), or refuse it by name with the reason and what to do instead.
//!
//! [`lex`] reads the command line as llama.cpp does (whole tokens matched against the names,
//! never bundled short flags; the value is always the next token; `--a_b` = `--a-b`; the
//! environment first, the command line over it) and hands clap canonical `--long=value` tokens.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fmt::Write as _;

/// What gemfilter does with an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Does {
    /// Parsed into the clap argument with this long name, which `cli::resolve` reads.
    Clap(&'static str),
    /// Accepted; it cannot change the answer here, and a notice says so.
    Noted(&'static str),
    /// Accepted without a notice: display or logging only, or what gemfilter does anyway.
    Quiet(&'static str),
    /// Refused by name with this reason.
    Refused(&'static str),
    /// llama.cpp's model presets: these clap arguments (long name, value; empty for a flag),
    /// each unless the command line gives that option itself.
    Preset(&'static [(&'static str, &'static str)]),
}

/// One llama-cli option.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    /// Its names as llama.cpp lists them (the first is the short one where there is one).
    pub names: &'static [&'static str],
    /// Names that turn a boolean option off (`--no-perf`, `-no-cnv`).
    pub neg: &'static [&'static str],
    /// The value hint, for options that take a value (the next argument).
    pub value: Option<&'static str>,
    /// The environment variable llama.cpp reads it from.
    pub env: Option<&'static str>,
    pub does: Does,
    /// What the negative names do.
    pub does_neg: Does,
}

impl Opt {
    const fn neg(self, names: &'static [&'static str], does: Does) -> Self {
        Self {
            neg: names,
            does_neg: does,
            ..self
        }
    }

    /// The long name shown in messages and docs.
    #[must_use]
    pub fn long(&self) -> &'static str {
        self.names
            .iter()
            .find(|n| n.starts_with("--"))
            .unwrap_or(&self.names[0])
    }

    /// Whether gemfilter takes it (in either polarity).
    #[must_use]
    pub fn accepted(&self) -> bool {
        !matches!(self.does, Does::Refused(_))
    }
}

const fn opt(
    names: &'static [&'static str],
    value: Option<&'static str>,
    env: Option<&'static str>,
    does: Does,
) -> Opt {
    Opt {
        names,
        neg: &[],
        value,
        env,
        does,
        does_neg: does,
    }
}

const DOWNLOAD: &str = "downloads are not supported (gemfilter never uses the network): pass -m with a local GGUF file, or -hf USER/MODEL[:QUANT] for one in llama.cpp's download cache";
const MULTIMODAL: &str = "multimodal input is not supported: gemfilter reads text prompts";
const THREADS: &str =
    "thread placement, priority and polling change speed, not the answer; gemfilter leaves them to the OS";
const PLACEMENT: &str =
    "weight and buffer placement changes speed and memory, not the answer; gemfilter places layers with -ngl, -sm, -ts and -dev";
const MEMORY: &str = "it changes memory use, not the answer of one prompt";
const CACHE: &str = "gemfilter keeps no prompt cache between turns beyond conversation mode's";
const FIT: &str =
    "gemfilter does not shrink -c or -ngl to free memory; it sizes the context from the prompt (-c 0)";
const WARMUP: &str = "the warm-up decode changes timing only; gemfilter does not run one";
const SPEC: &str = "speculative decoding changes speed, not the answer; gemfilter decodes without it (--gem-draft selects prompt tokens with a small model instead)";

use Does::{Clap, Noted, Preset, Quiet, Refused};

/// llama-cli's options, in `common/arg.cpp`'s order.
pub static TABLE: &[Opt] = &[
    opt(&["-h", "--help", "--usage"], None, None, Clap("help")),
    opt(&["--version"], None, None, Clap("version")),
    opt(&["-cl", "--cache-list"], None, None, Clap("cache-list")),
    opt(&["--completion-bash"], None, None, Clap("completion-bash")),
    opt(&["--server-base"], Some("URL"), None, Refused("not supported: gemfilter runs the model itself; pass -m with a local GGUF file")),
    opt(&["--verbose-prompt"], None, None, Noted("gemfilter does not print the prompt's tokens (--gem-show prints the selected text)")),
    opt(&["--display-prompt"], None, None, Clap("display-prompt")).neg(&["--no-display-prompt"], Clap("no-display-prompt")),
    opt(&["-co", "--color"], Some("[on|off|auto]"), None, Quiet("colours only distinguish the prompt from the answer on a terminal; gemfilter prints plain text")),
    opt(&["-t", "--threads"], Some("N"), Some("LLAMA_ARG_THREADS"), Clap("threads")),
    opt(&["-tb", "--threads-batch"], Some("N"), None, Clap("threads-batch")),
    opt(&["-C", "--cpu-mask"], Some("M"), None, Noted(THREADS)),
    opt(&["-Cr", "--cpu-range"], Some("lo-hi"), None, Noted(THREADS)),
    opt(&["--cpu-strict"], Some("<0|1>"), None, Noted(THREADS)),
    opt(&["--prio"], Some("N"), None, Noted(THREADS)),
    opt(&["--poll"], Some("<0...100>"), None, Noted(THREADS)),
    opt(&["-Cb", "--cpu-mask-batch"], Some("M"), None, Noted(THREADS)),
    opt(&["-Crb", "--cpu-range-batch"], Some("lo-hi"), None, Noted(THREADS)),
    opt(&["--cpu-strict-batch"], Some("<0|1>"), None, Noted(THREADS)),
    opt(&["--prio-batch"], Some("N"), None, Noted(THREADS)),
    opt(&["--poll-batch"], Some("<0|1>"), None, Noted(THREADS)),
    opt(&["-c", "--ctx-size"], Some("N"), Some("LLAMA_ARG_CTX_SIZE"), Clap("ctx-size")),
    opt(&["-n", "--predict", "--n-predict"], Some("N"), Some("LLAMA_ARG_N_PREDICT"), Clap("n-predict")),
    opt(&["-b", "--batch-size"], Some("N"), Some("LLAMA_ARG_BATCH"), Clap("batch-size")),
    opt(&["-ub", "--ubatch-size"], Some("N"), Some("LLAMA_ARG_UBATCH"), Clap("ubatch-size")),
    opt(&["--keep"], Some("N"), None, Clap("keep")),
    opt(&["--swa-full"], None, Some("LLAMA_ARG_SWA_FULL"), Noted(MEMORY)),
    opt(&["-ctxcp", "--ctx-checkpoints", "--swa-checkpoints"], Some("N"), Some("LLAMA_ARG_CTX_CHECKPOINTS"), Noted(CACHE)),
    opt(&["-cram", "--cache-ram"], Some("N"), Some("LLAMA_ARG_CACHE_RAM"), Noted(CACHE)),
    opt(&["--context-shift"], None, Some("LLAMA_ARG_CONTEXT_SHIFT"), Clap("context-shift")).neg(&["--no-context-shift"], Clap("no-context-shift")),
    opt(&["-fa", "--flash-attn"], Some("[on|off|auto]"), Some("LLAMA_ARG_FLASH_ATTN"), Clap("flash-attn")),
    opt(&["-p", "--prompt"], Some("PROMPT"), None, Clap("prompt")),
    opt(&["-sys", "--system-prompt"], Some("PROMPT"), None, Clap("system-prompt")),
    opt(&["--perf"], None, Some("LLAMA_ARG_PERF"), Clap("perf")).neg(&["--no-perf"], Clap("no-perf")),
    opt(&["--show-timings"], None, Some("LLAMA_ARG_SHOW_TIMINGS"), Clap("perf")).neg(&["--no-show-timings"], Clap("no-perf")),
    opt(&["-f", "--file"], Some("FNAME"), None, Clap("file")),
    opt(&["-sysf", "--system-prompt-file"], Some("FNAME"), None, Clap("system-prompt-file")),
    // llama.cpp reads -bf's bytes as the prompt, as it reads -f's text: here they are -f.
    opt(&["-bf", "--binary-file"], Some("FNAME"), None, Clap("file")),
    opt(&["-e", "--escape"], None, None, Clap("escape")).neg(&["--no-escape"], Clap("no-escape")),
    opt(&["-ptc", "--print-token-count"], Some("N"), None, Noted("gemfilter does not print running token counts (--json reports them at the end)")),
    opt(&["--prompt-cache"], Some("FNAME"), None, Clap("prompt-cache")),
    opt(&["--prompt-cache-all"], None, None, Clap("prompt-cache-all")),
    opt(&["--prompt-cache-ro"], None, None, Clap("prompt-cache-ro")),
    opt(&["-r", "--reverse-prompt"], Some("PROMPT"), None, Clap("reverse-prompt")),
    opt(&["-sp", "--special"], None, None, Clap("special")),
    opt(&["-cnv", "--conversation"], None, None, Clap("conversation")).neg(&["-no-cnv", "--no-conversation"], Clap("no-conversation")),
    opt(&["-st", "--single-turn"], None, None, Clap("single-turn")),
    opt(&["-i", "--interactive"], None, None, Clap("interactive")),
    opt(&["-if", "--interactive-first"], None, None, Clap("interactive-first")),
    opt(&["-mli", "--multiline-input"], None, None, Clap("multiline-input")),
    opt(&["--in-prefix-bos"], None, None, Clap("in-prefix-bos")),
    opt(&["--in-prefix"], Some("STRING"), None, Clap("in-prefix")),
    opt(&["--in-suffix"], Some("STRING"), None, Clap("in-suffix")),
    opt(&["--warmup"], None, None, Quiet(WARMUP)).neg(&["--no-warmup"], Quiet(WARMUP)),
    opt(&["--samplers"], Some("SAMPLERS"), None, Clap("samplers")),
    opt(&["-s", "--seed"], Some("SEED"), None, Clap("seed")),
    opt(&["--sampler-seq", "--sampling-seq"], Some("SEQUENCE"), None, Clap("sampler-seq")),
    opt(&["--ignore-eos"], None, None, Clap("ignore-eos")),
    opt(&["--temp", "--temperature"], Some("N"), Some("LLAMA_ARG_TEMPERATURE"), Clap("temp")),
    opt(&["--top-k"], Some("N"), Some("LLAMA_ARG_TOP_K"), Clap("top-k")),
    opt(&["--top-p"], Some("N"), Some("LLAMA_ARG_TOP_P"), Clap("top-p")),
    opt(&["--min-p"], Some("N"), Some("LLAMA_ARG_MIN_P"), Clap("min-p")),
    opt(&["--top-nsigma", "--top-n-sigma"], Some("N"), None, Clap("top-nsigma")),
    opt(&["--xtc-probability"], Some("N"), None, Clap("xtc-probability")),
    opt(&["--xtc-threshold"], Some("N"), None, Clap("xtc-threshold")),
    opt(&["--typical", "--typical-p"], Some("N"), None, Clap("typical")),
    opt(&["--repeat-last-n"], Some("N"), None, Clap("repeat-last-n")),
    opt(&["--repeat-penalty"], Some("N"), Some("LLAMA_ARG_REPEAT_PENALTY"), Clap("repeat-penalty")),
    opt(&["--presence-penalty"], Some("N"), Some("LLAMA_ARG_PRESENCE_PENALTY"), Clap("presence-penalty")),
    opt(&["--frequency-penalty"], Some("N"), Some("LLAMA_ARG_FREQUENCY_PENALTY"), Clap("frequency-penalty")),
    opt(&["--dry-multiplier"], Some("N"), None, Clap("dry-multiplier")),
    opt(&["--dry-base"], Some("N"), None, Clap("dry-base")),
    opt(&["--dry-allowed-length"], Some("N"), None, Clap("dry-allowed-length")),
    opt(&["--dry-penalty-last-n"], Some("N"), None, Clap("dry-penalty-last-n")),
    opt(&["--dry-sequence-breaker"], Some("STRING"), None, Clap("dry-sequence-breaker")),
    opt(&["--adaptive-target"], Some("N"), None, Clap("adaptive-target")),
    opt(&["--adaptive-decay"], Some("N"), None, Clap("adaptive-decay")),
    opt(&["--dynatemp-range"], Some("N"), None, Clap("dynatemp-range")),
    opt(&["--dynatemp-exp"], Some("N"), None, Clap("dynatemp-exp")),
    opt(&["--mirostat"], Some("N"), None, Clap("mirostat")),
    opt(&["--mirostat-lr"], Some("N"), None, Clap("mirostat-lr")),
    opt(&["--mirostat-ent"], Some("N"), None, Clap("mirostat-ent")),
    opt(&["-l", "--logit-bias"], Some("TOKEN_ID(+/-)BIAS"), None, Clap("logit-bias")),
    opt(&["--grammar"], Some("GRAMMAR"), None, Clap("grammar")),
    opt(&["--grammar-file"], Some("FNAME"), None, Clap("grammar-file")),
    opt(&["-j", "--json-schema"], Some("SCHEMA"), None, Clap("json-schema")),
    opt(&["-jf", "--json-schema-file"], Some("FILE"), None, Clap("json-schema-file")),
    opt(&["-bs", "--backend-sampling"], None, Some("LLAMA_ARG_BACKEND_SAMPLING"), Noted("sampling runs on the CPU; the tokens are the same")),
    opt(&["--rope-scaling"], Some("{none,linear,yarn}"), Some("LLAMA_ARG_ROPE_SCALING_TYPE"), Clap("rope-scaling")),
    opt(&["--rope-scale"], Some("N"), Some("LLAMA_ARG_ROPE_SCALE"), Clap("rope-scale")),
    opt(&["--rope-freq-base"], Some("N"), Some("LLAMA_ARG_ROPE_FREQ_BASE"), Clap("rope-freq-base")),
    opt(&["--rope-freq-scale"], Some("N"), Some("LLAMA_ARG_ROPE_FREQ_SCALE"), Clap("rope-freq-scale")),
    opt(&["--yarn-orig-ctx"], Some("N"), Some("LLAMA_ARG_YARN_ORIG_CTX"), Clap("yarn-orig-ctx")),
    opt(&["--yarn-ext-factor"], Some("N"), Some("LLAMA_ARG_YARN_EXT_FACTOR"), Clap("yarn-ext-factor")),
    opt(&["--yarn-attn-factor"], Some("N"), Some("LLAMA_ARG_YARN_ATTN_FACTOR"), Clap("yarn-attn-factor")),
    opt(&["--yarn-beta-slow"], Some("N"), Some("LLAMA_ARG_YARN_BETA_SLOW"), Clap("yarn-beta-slow")),
    opt(&["--yarn-beta-fast"], Some("N"), Some("LLAMA_ARG_YARN_BETA_FAST"), Clap("yarn-beta-fast")),
    opt(&["-gan", "--grp-attn-n"], Some("N"), Some("LLAMA_ARG_GRP_ATTN_N"), Clap("grp-attn-n")),
    opt(&["-gaw", "--grp-attn-w"], Some("N"), Some("LLAMA_ARG_GRP_ATTN_W"), Clap("grp-attn-w")),
    opt(&["-kvo", "--kv-offload"], None, Some("LLAMA_ARG_KV_OFFLOAD"), Quiet("the KV cache goes where its layers go, as by default")).neg(&["-nkvo", "--no-kv-offload"], Clap("no-kv-offload")),
    opt(&["--repack"], None, Some("LLAMA_ARG_REPACK"), Quiet("weights are repacked for the CPU when llama.cpp can, as by default")).neg(&["-nr", "--no-repack"], Noted(PLACEMENT)),
    opt(&["--no-host"], None, Some("LLAMA_ARG_NO_HOST"), Noted(PLACEMENT)),
    opt(&["-ctk", "--cache-type-k"], Some("TYPE"), Some("LLAMA_ARG_CACHE_TYPE_K"), Clap("cache-type-k")),
    opt(&["-ctv", "--cache-type-v"], Some("TYPE"), Some("LLAMA_ARG_CACHE_TYPE_V"), Clap("cache-type-v")),
    opt(&["-dt", "--defrag-thold"], Some("N"), Some("LLAMA_ARG_DEFRAG_THOLD"), Quiet("deprecated in llama.cpp, where it does nothing")),
    opt(&["-np", "--parallel"], Some("N"), Some("LLAMA_ARG_N_PARALLEL"), Noted("gemfilter decodes one sequence")),
    opt(&["-mm", "--mmproj"], Some("FILE"), Some("LLAMA_ARG_MMPROJ"), Refused(MULTIMODAL)),
    opt(&["-mmu", "--mmproj-url"], Some("URL"), Some("LLAMA_ARG_MMPROJ_URL"), Refused(MULTIMODAL)),
    opt(&["--mmproj-auto"], None, Some("LLAMA_ARG_MMPROJ_AUTO"), Quiet("no projector is looked for: models come from -m, not downloads")).neg(&["--no-mmproj", "--no-mmproj-auto"], Quiet("no projector is ever loaded")),
    opt(&["--mmproj-offload"], None, Some("LLAMA_ARG_MMPROJ_OFFLOAD"), Quiet("no projector is ever loaded")).neg(&["--no-mmproj-offload"], Quiet("no projector is ever loaded")),
    opt(&["-mmdev", "--mmproj-device"], Some("DEVICE"), Some("MTMD_BACKEND_DEVICE"), Refused(MULTIMODAL)),
    opt(&["--image", "--audio", "--video"], Some("FILE"), None, Refused(MULTIMODAL)),
    opt(&["--image-min-tokens"], Some("N"), Some("LLAMA_ARG_IMAGE_MIN_TOKENS"), Refused(MULTIMODAL)),
    opt(&["--image-max-tokens"], Some("N"), Some("LLAMA_ARG_IMAGE_MAX_TOKENS"), Refused(MULTIMODAL)),
    opt(&["--video-fps"], Some("N"), Some("LLAMA_ARG_VIDEO_FPS"), Refused(MULTIMODAL)),
    opt(&["--video-timestamp-interval"], Some("N"), Some("LLAMA_ARG_VIDEO_TIMESTAMP_INTERVAL"), Refused(MULTIMODAL)),
    opt(&["--video-ffmpeg-dir"], Some("DIR"), Some("LLAMA_ARG_VIDEO_FFMPEG_DIR"), Refused(MULTIMODAL)),
    opt(&["--rpc"], Some("SERVERS"), Some("LLAMA_ARG_RPC"), Clap("rpc")),
    opt(&["-lm", "--load-mode"], Some("MODE"), Some("LLAMA_ARG_LOAD_MODE"), Clap("load-mode")),
    opt(&["-lzm", "--lazy-mode"], Some("MODE"), Some("LLAMA_ARG_LAZY_MODE"), Noted(PLACEMENT)),
    opt(&["--numa"], Some("TYPE"), Some("LLAMA_ARG_NUMA"), Noted(THREADS)),
    opt(&["-dev", "--device"], Some("<dev1,dev2,..>"), Some("LLAMA_ARG_DEVICE"), Clap("device")),
    opt(&["--list-devices"], None, None, Clap("list-devices")),
    opt(&["-ot", "--override-tensor"], Some("<tensor name pattern>=<buffer type>,..."), Some("LLAMA_ARG_OVERRIDE_TENSOR"), Noted(PLACEMENT)),
    opt(&["-cmoe", "--cpu-moe"], None, Some("LLAMA_ARG_CPU_MOE"), Noted(PLACEMENT)),
    opt(&["-ncmoe", "--n-cpu-moe"], Some("N"), Some("LLAMA_ARG_N_CPU_MOE"), Noted(PLACEMENT)),
    opt(&["-ncffn", "--n-cpu-ffn"], Some("N"), Some("LLAMA_ARG_N_CPU_FFN"), Noted(PLACEMENT)),
    opt(&["-ngl", "--gpu-layers", "--n-gpu-layers"], Some("N"), Some("LLAMA_ARG_N_GPU_LAYERS"), Clap("n-gpu-layers")),
    opt(&["-sm", "--split-mode"], Some("{none,layer,row,tensor}"), Some("LLAMA_ARG_SPLIT_MODE"), Clap("split-mode")),
    opt(&["-ts", "--tensor-split"], Some("N0,N1,N2,..."), Some("LLAMA_ARG_TENSOR_SPLIT"), Clap("tensor-split")),
    opt(&["-mg", "--main-gpu"], Some("INDEX"), Some("LLAMA_ARG_MAIN_GPU"), Clap("main-gpu")),
    opt(&["-fit", "--fit"], Some("[on|off]"), Some("LLAMA_ARG_FIT"), Noted(FIT)),
    opt(&["-fitt", "--fit-target"], Some("MiB0,MiB1,MiB2,..."), Some("LLAMA_ARG_FIT_TARGET"), Noted(FIT)),
    opt(&["-fitc", "--fit-ctx"], Some("N"), Some("LLAMA_ARG_FIT_CTX"), Noted(FIT)),
    opt(&["--check-tensors"], None, None, Clap("check-tensors")),
    opt(&["--override-kv"], Some("KEY=TYPE:VALUE,..."), None, Clap("override-kv")),
    opt(&["--op-offload"], None, None, Quiet("operations run where llama.cpp schedules them, as by default")).neg(&["--no-op-offload"], Noted(PLACEMENT)),
    opt(&["--lora"], Some("FNAME"), None, Clap("lora")),
    opt(&["--lora-scaled"], Some("FNAME:SCALE,..."), None, Clap("lora-scaled")),
    opt(&["--control-vector"], Some("FNAME"), None, Clap("control-vector")),
    opt(&["--control-vector-scaled"], Some("FNAME:SCALE,..."), None, Clap("control-vector-scaled")),
    opt(&["--control-vector-layer-range"], Some("START END"), None, Clap("control-vector-layer-range")),
    opt(&["-m", "--model"], Some("FNAME"), Some("LLAMA_ARG_MODEL"), Clap("model")),
    opt(&["-mu", "--model-url"], Some("MODEL_URL"), Some("LLAMA_ARG_MODEL_URL"), Refused(DOWNLOAD)),
    opt(&["-dr", "--docker-repo"], Some("[<repo>/]<model>[:quant]"), Some("LLAMA_ARG_DOCKER_REPO"), Refused(DOWNLOAD)),
    opt(&["-hf", "-hfr", "--hf-repo"], Some("<user>/<model>[:quant]"), Some("LLAMA_ARG_HF_REPO"), Clap("hf-repo")),
    opt(&["-hff", "--hf-file"], Some("FILE"), Some("LLAMA_ARG_HF_FILE"), Clap("hf-file")),
    opt(&["-hft", "--hf-token"], Some("TOKEN"), Some("HF_TOKEN"), Quiet("gemfilter never downloads: -hf reads llama.cpp's local cache, which needs no token")),
    opt(&["-o", "--output", "--output-file"], Some("FNAME"), None, Clap("output-file")),
    opt(&["--chat-template-kwargs"], Some("STRING"), Some("LLAMA_ARG_CHAT_TEMPLATE_KWARGS"), Clap("chat-template-kwargs")),
    opt(&["--jinja"], None, Some("LLAMA_ARG_JINJA"), Clap("jinja")).neg(&["--no-jinja"], Clap("no-jinja")),
    opt(&["--reasoning-format"], Some("FORMAT"), Some("LLAMA_ARG_THINK"), Clap("reasoning-format")),
    opt(&["-rea", "--reasoning"], Some("[on|off|auto]"), Some("LLAMA_ARG_REASONING"), Clap("reasoning")),
    opt(&["--reasoning-effort"], Some("LEVEL"), Some("LLAMA_ARG_REASONING_EFFORT"), Clap("reasoning-effort")),
    opt(&["--reasoning-budget"], Some("N"), Some("LLAMA_ARG_THINK_BUDGET"), Clap("reasoning-budget")),
    opt(&["--reasoning-budget-message"], Some("MESSAGE"), Some("LLAMA_ARG_THINK_BUDGET_MESSAGE"), Clap("reasoning-budget-message")),
    opt(&["--reasoning-preserve"], None, Some("LLAMA_ARG_REASONING_PRESERVE"), Clap("reasoning-preserve")).neg(&["--no-reasoning-preserve"], Clap("no-reasoning-preserve")),
    opt(&["--chat-template"], Some("JINJA_TEMPLATE"), Some("LLAMA_ARG_CHAT_TEMPLATE"), Clap("chat-template")),
    opt(&["--chat-template-file"], Some("JINJA_TEMPLATE_FILE"), Some("LLAMA_ARG_CHAT_TEMPLATE_FILE"), Clap("chat-template-file")),
    opt(&["--skip-chat-parsing"], None, Some("LLAMA_ARG_SKIP_CHAT_PARSING"), Noted("not applied yet: a template's thinking block is still shown apart, as llama-cli shows it (docs/usage.md)")).neg(&["--no-skip-chat-parsing"], Quiet("a template's thinking block is shown apart, as llama-cli shows it")),
    opt(&["--simple-io"], None, None, Quiet("gemfilter's input and output are always plain")),
    opt(&["--log-disable"], None, None, Clap("log-disable")),
    opt(&["--log-file"], Some("FNAME"), Some("LLAMA_ARG_LOG_FILE"), Clap("log-file")),
    opt(&["--log-jsonl"], None, Some("LLAMA_ARG_LOG_JSONL"), Clap("log-jsonl")).neg(&["--no-log-jsonl"], Clap("no-log-jsonl")),
    opt(&["--log-prompts-dir"], Some("PATH"), None, Clap("log-prompts-dir")),
    opt(&["--log-colors"], Some("[on|off|auto]"), Some("LLAMA_ARG_LOG_COLORS"), Quiet("gemfilter's notices are plain text")),
    opt(&["-v", "--verbose", "--log-verbose"], None, None, Clap("verbose")),
    opt(&["--offline"], None, Some("LLAMA_ARG_OFFLINE"), Quiet("gemfilter never uses the network")),
    opt(&["-lv", "--verbosity", "--log-verbosity"], Some("N"), Some("LLAMA_ARG_LOG_VERBOSITY"), Quiet("llama.cpp's log is shown with -v, hidden otherwise")),
    opt(&["--log-prefix"], None, Some("LLAMA_ARG_LOG_PREFIX"), Quiet("notices have no prefix")).neg(&["--no-log-prefix"], Quiet("notices have no prefix")),
    opt(&["--log-timestamps"], None, Some("LLAMA_ARG_LOG_TIMESTAMPS"), Quiet("notices have no timestamps")).neg(&["--no-log-timestamps"], Quiet("notices have no timestamps")),
    opt(&["--spec-draft-hf", "-hfd", "-hfrd", "--hf-repo-draft"], Some("<user>/<model>[:quant]"), Some("LLAMA_ARG_SPEC_DRAFT_HF_REPO"), Noted(SPEC)),
    opt(&["--spec-draft-threads", "-td", "--threads-draft"], Some("N"), None, Noted(SPEC)),
    opt(&["--spec-draft-threads-batch", "-tbd", "--threads-batch-draft"], Some("N"), None, Noted(SPEC)),
    opt(&["--spec-draft-cpu-mask", "-Cd", "--cpu-mask-draft"], Some("M"), None, Noted(SPEC)),
    opt(&["--spec-draft-cpu-range", "-Crd", "--cpu-range-draft"], Some("lo-hi"), None, Noted(SPEC)),
    opt(&["--spec-draft-cpu-strict", "--cpu-strict-draft"], Some("<0|1>"), None, Noted(SPEC)),
    opt(&["--spec-draft-prio", "--prio-draft"], Some("N"), None, Noted(SPEC)),
    opt(&["--spec-draft-poll", "--poll-draft"], Some("<0|1>"), None, Noted(SPEC)),
    opt(&["--spec-draft-cpu-mask-batch", "-Cbd", "--cpu-mask-batch-draft"], Some("M"), None, Noted(SPEC)),
    opt(&["--spec-draft-cpu-strict-batch", "--cpu-strict-batch-draft"], Some("<0|1>"), None, Noted(SPEC)),
    opt(&["--spec-draft-prio-batch", "--prio-batch-draft"], Some("N"), None, Noted(SPEC)),
    opt(&["--spec-draft-poll-batch", "--poll-batch-draft"], Some("<0|1>"), None, Noted(SPEC)),
    opt(&["--spec-draft-type-k", "-ctkd", "--cache-type-k-draft"], Some("TYPE"), Some("LLAMA_ARG_SPEC_DRAFT_CACHE_TYPE_K"), Noted(SPEC)),
    opt(&["--spec-draft-type-v", "-ctvd", "--cache-type-v-draft"], Some("TYPE"), Some("LLAMA_ARG_SPEC_DRAFT_CACHE_TYPE_V"), Noted(SPEC)),
    opt(&["--spec-draft-override-tensor", "-otd", "--override-tensor-draft"], Some("<tensor name pattern>=<buffer type>,..."), None, Noted(SPEC)),
    opt(&["--spec-draft-cpu-moe", "-cmoed", "--cpu-moe-draft"], None, Some("LLAMA_ARG_SPEC_DRAFT_CPU_MOE"), Noted(SPEC)),
    opt(&["--spec-draft-n-cpu-moe", "--spec-draft-ncmoe", "-ncmoed", "--n-cpu-moe-draft"], Some("N"), Some("LLAMA_ARG_SPEC_DRAFT_N_CPU_MOE"), Noted(SPEC)),
    opt(&["--spec-draft-n-max"], Some("N"), Some("LLAMA_ARG_SPEC_DRAFT_N_MAX"), Noted(SPEC)),
    opt(&["--spec-draft-n-min"], Some("N"), Some("LLAMA_ARG_SPEC_DRAFT_N_MIN"), Noted(SPEC)),
    opt(&["--spec-synth-len"], Some("L"), Some("LLAMA_ARG_SPEC_SYNTH_LEN"), Noted(SPEC)),
    opt(&["--spec-synth-rates"], Some("P0,P1,..."), Some("LLAMA_ARG_SPEC_SYNTH_RATES"), Noted(SPEC)),
    opt(&["--spec-draft-p-split", "--draft-p-split"], Some("P"), Some("LLAMA_ARG_SPEC_DRAFT_P_SPLIT"), Noted(SPEC)),
    opt(&["--spec-draft-p-min", "--draft-p-min"], Some("P"), Some("LLAMA_ARG_SPEC_DRAFT_P_MIN"), Noted(SPEC)),
    opt(&["--spec-draft-backend-sampling"], None, Some("LLAMA_ARG_SPEC_DRAFT_BACKEND_SAMPLING"), Noted(SPEC)).neg(&["--no-spec-draft-backend-sampling"], Noted(SPEC)),
    opt(&["--spec-draft-sampling"], Some("{greedy,probabilistic}"), Some("LLAMA_ARG_SPEC_DRAFT_SAMPLING"), Noted(SPEC)),
    opt(&["--spec-draft-device", "-devd", "--device-draft"], Some("<dev1,dev2,..>"), None, Noted(SPEC)),
    opt(&["--spec-draft-ngl", "-ngld", "--gpu-layers-draft", "--n-gpu-layers-draft"], Some("N"), Some("LLAMA_ARG_N_GPU_LAYERS_DRAFT"), Noted(SPEC)),
    opt(&["--spec-draft-model", "-md", "--model-draft"], Some("FNAME"), Some("LLAMA_ARG_SPEC_DRAFT_MODEL"), Noted(SPEC)),
    opt(&["--spec-type"], Some("VALUE"), Some("LLAMA_ARG_SPEC_TYPE"), Noted(SPEC)),
    opt(&["--spec-ngram-mod-n-min"], Some("N"), None, Noted(SPEC)),
    opt(&["--spec-ngram-mod-n-max"], Some("N"), None, Noted(SPEC)),
    opt(&["--spec-ngram-mod-n-match"], Some("N"), None, Noted(SPEC)),
    opt(&["--spec-ngram-simple-size-n"], Some("N"), None, Noted(SPEC)),
    opt(&["--spec-ngram-simple-size-m"], Some("N"), None, Noted(SPEC)),
    opt(&["--spec-ngram-simple-min-hits"], Some("N"), None, Noted(SPEC)),
    opt(&["--spec-ngram-map-k-size-n"], Some("N"), None, Noted(SPEC)),
    opt(&["--spec-ngram-map-k-size-m"], Some("N"), None, Noted(SPEC)),
    opt(&["--spec-ngram-map-k-min-hits"], Some("N"), None, Noted(SPEC)),
    opt(&["--spec-ngram-map-k4v-size-n"], Some("N"), None, Noted(SPEC)),
    opt(&["--spec-ngram-map-k4v-size-m"], Some("N"), None, Noted(SPEC)),
    opt(&["--spec-ngram-map-k4v-min-hits"], Some("N"), None, Noted(SPEC)),
    opt(&["--draft", "--draft-n", "--draft-max"], Some("N"), Some("LLAMA_ARG_DRAFT_MAX"), Refused("removed from llama.cpp: use --spec-draft-n-max")),
    opt(&["--draft-min", "--draft-n-min"], Some("N"), Some("LLAMA_ARG_DRAFT_MIN"), Refused("removed from llama.cpp: use --spec-draft-n-min")),
    // llama.cpp's presets (-hf from the local cache); the server port and -np have no meaning
    // here, and -c is llama.cpp's 131072 per sequence of its two.
    opt(&["--gpt-oss-20b-default"], None, None, Preset(&[("hf-repo", "ggml-org/gpt-oss-20b-GGUF"), ("hf-file", "gpt-oss-20b-mxfp4.gguf"), ("ubatch-size", "2048"), ("batch-size", "32768"), ("ctx-size", "262144"), ("temp", "1.0"), ("top-p", "1.0"), ("top-k", "0"), ("min-p", "0.01"), ("jinja", "")])),
    opt(&["--gpt-oss-120b-default"], None, None, Preset(&[("hf-repo", "ggml-org/gpt-oss-120b-GGUF"), ("ubatch-size", "2048"), ("batch-size", "32768"), ("ctx-size", "262144"), ("temp", "1.0"), ("top-p", "1.0"), ("top-k", "0"), ("min-p", "0.01"), ("jinja", "")])),
    opt(&["--vision-gemma-4b-default"], None, None, Preset(&[("hf-repo", "ggml-org/gemma-3-4b-it-qat-GGUF"), ("ctx-size", "0"), ("jinja", "")])),
    opt(&["--vision-gemma-12b-default"], None, None, Preset(&[("hf-repo", "ggml-org/gemma-3-12b-it-qat-GGUF"), ("ctx-size", "0"), ("jinja", "")])),
    opt(&["--spec-default"], None, None, Noted(SPEC)),
];

/// The option a command-line token names, and whether it is a negative name.
#[must_use]
pub fn find(name: &str) -> Option<(&'static Opt, bool)> {
    TABLE.iter().find_map(|o| {
        if o.names.contains(&name) {
            Some((o, true))
        } else if o.neg.contains(&name) {
            Some((o, false))
        } else {
            None
        }
    })
}

/// The command line for clap, and the notices to print once logging is set up.
#[derive(Debug, Default)]
pub struct Lexed {
    pub args: Vec<OsString>,
    pub notices: Vec<String>,
    /// Preset arguments, added at the end where the command line lacks them.
    preset: Vec<(&'static str, &'static str)>,
}

/// llama.cpp's truthy and falsy words (`common_arg_utils::is_truthy`/`is_falsey`).
#[must_use]
pub fn truthy(v: &str) -> Option<bool> {
    match v {
        "on" | "enabled" | "true" | "1" => Some(true),
        "off" | "disabled" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// `--a_b` is `--a-b`, as in llama.cpp.
fn canonical(name: &str) -> String {
    if name.starts_with("--") {
        name.replace('_', "-")
    } else {
        name.to_owned()
    }
}

/// Apply one occurrence of `opt` (named `name`, positive or not, with its value).
fn apply(
    out: &mut Lexed,
    opt: &Opt,
    positive: bool,
    name: &str,
    value: Option<&str>,
) -> Result<(), String> {
    match if positive { opt.does } else { opt.does_neg } {
        Clap(long) => out.args.push(match value {
            Some(v) => format!("--{long}={v}").into(),
            None => format!("--{long}").into(),
        }),
        Noted(why) => out
            .notices
            .push(format!("{name} has no effect here: {why}")),
        Quiet(_) => {}
        Refused(why) => return Err(format!("{name}: {why}")),
        Preset(args) => out.preset.extend_from_slice(args),
    }
    Ok(())
}

/// A preset's arguments the command line (or environment) does not give itself.
fn add_presets(out: &mut Lexed) {
    for (long, value) in std::mem::take(&mut out.preset) {
        let flag = format!("--{long}");
        let negated = format!("--no-{long}");
        let given = out.args.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == flag || a == negated || a.starts_with(&format!("{flag}=")))
        });
        if !given {
            out.args.push(if value.is_empty() {
                flag.into()
            } else {
                format!("{flag}={value}").into()
            });
        }
    }
}

/// Read llama-cli's command line (see the module docs). `subcommand_longs` is `None` in the
/// default mode; for a subcommand it lists that subcommand's long names, and only options that
/// map onto one of them are rewritten (the rest is the subcommand's own, left to clap).
///
/// # Errors
/// A refused option (by name, with the reason), a missing value, an unknown multi-letter
/// single-dash name, or a bad boolean in an environment variable; one line each.
#[allow(clippy::implicit_hasher)] // one caller, a plain HashSet
pub fn lex(
    argv: &[OsString],
    subcommand_longs: Option<&HashSet<String>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Lexed, String> {
    let mut out = Lexed::default();
    let mut seen: HashMap<usize, String> = HashMap::new();
    let mut i = 0;
    while i < argv.len() {
        let raw = &argv[i];
        i += 1;
        let Some(tok) = raw.to_str().filter(|_| i > 1) else {
            out.args.push(raw.clone());
            continue;
        };
        if tok == "--" {
            out.args.extend(argv[i - 1..].iter().cloned());
            break;
        }
        let (name, inline) = match tok.split_once('=') {
            Some((n, v)) if n.starts_with('-') => (canonical(n), Some(v)),
            _ => (canonical(tok), None),
        };
        let found = find(&name).filter(|(o, _)| inline.is_none() || o.value.is_some());
        let Some((opt, positive)) = found else {
            if subcommand_longs.is_none() && is_unknown_single_dash(tok) {
                return Err(format!(
                    "unknown option {} (llama.cpp options are whole names, with the value as the next argument)",
                    crate::sanitize::quote(tok)
                ));
            }
            out.args.push(raw.clone());
            continue;
        };
        if let Some(longs) = subcommand_longs {
            let does = if positive { opt.does } else { opt.does_neg };
            if !matches!(does, Clap(l) if longs.contains(l)) {
                out.args.push(raw.clone());
                continue;
            }
        }
        seen.insert(index(opt), name.clone());
        let value = match (opt.value, inline) {
            (None, _) => None,
            (Some(_), Some(v)) => Some(v.to_owned()),
            (Some(hint), None) => {
                // `START END`: llama.cpp's two-value options take the next two arguments.
                let n = hint.split(' ').count();
                let vs = argv
                    .get(i..i + n)
                    .and_then(|vs| vs.iter().map(|v| v.to_str()).collect::<Option<Vec<_>>>())
                    .ok_or_else(|| {
                        format!(
                            "{name} expects {} ({hint})",
                            if n > 1 { "values" } else { "a value" }
                        )
                    })?;
                i += n;
                Some(vs.join(" "))
            }
        };
        apply(&mut out, opt, positive, &name, value.as_deref())?;
    }
    if subcommand_longs.is_none() {
        from_env(&mut out, &seen, env)?;
    }
    add_presets(&mut out);
    Ok(out)
}

fn index(opt: &Opt) -> usize {
    TABLE
        .iter()
        .position(|o| std::ptr::eq(o, opt))
        .unwrap_or(usize::MAX)
}

/// `-xyz` that names no option: never read as bundled short flags.
fn is_unknown_single_dash(tok: &str) -> bool {
    let mut c = tok.chars();
    c.next() == Some('-') && c.next().is_some_and(char::is_alphabetic) && c.next().is_some()
}

/// `LLAMA_ARG_*` variables of options not on the command line; the command line wins, with
/// llama.cpp's warning.
fn from_env(
    out: &mut Lexed,
    seen: &HashMap<usize, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    for (k, opt) in TABLE.iter().enumerate() {
        let Some(var) = opt.env.filter(|v| v.starts_with("LLAMA_ARG_")) else {
            continue;
        };
        let neg_var = var.replacen("LLAMA_ARG_", "LLAMA_ARG_NO_", 1);
        let negated = !opt.neg.is_empty() && env(&neg_var).is_some();
        let value = env(var);
        if !negated && value.is_none() {
            continue;
        }
        if let Some(given) = seen.get(&k) {
            out.notices.push(format!(
                "{var} is set, but the command line's {given} overrides it"
            ));
            continue;
        }
        let name = format!("{var} ({})", opt.long());
        if negated {
            apply(out, opt, false, &name, None)?;
        } else if let Some(v) = value {
            if opt.value.is_some() {
                apply(out, opt, true, &name, Some(&v))?;
            } else {
                match (truthy(&v), opt.neg.is_empty()) {
                    (Some(b), false) => apply(out, opt, b, &name, None)?,
                    (Some(true), true) => apply(out, opt, true, &name, None)?,
                    // llama.cpp applies a flag only for a truthy word; booleans must parse.
                    (Some(false) | None, true) => {}
                    (None, false) => {
                        return Err(format!(
                            "{var}: invalid boolean value {} (1/0, true/false, on/off, enabled/disabled)",
                            crate::sanitize::quote(&v)
                        ))
                    }
                }
            }
        }
    }
    Ok(())
}

/// How many options are accepted (parsed or taken as having no effect) and refused.
#[must_use]
pub fn counts() -> (usize, usize) {
    let accepted = TABLE.iter().filter(|o| o.accepted()).count();
    (accepted, TABLE.len() - accepted)
}

/// `--completion-bash`: a bash completion script for gemfilter, as llama.cpp's
/// `common_params_print_completion` writes one: every name of the table (refused ones too, so
/// their reason is one Tab away) and gemfilter's own `longs`; GGUF, grammar and template files
/// after the options that take them.
#[must_use]
pub fn bash_completion(longs: &[String]) -> String {
    let mut names: Vec<String> = TABLE
        .iter()
        .flat_map(|o| o.names.iter().chain(o.neg))
        .map(|n| (*n).to_owned())
        .collect();
    for l in longs {
        let n = format!("--{l}");
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let files = |ext: &str| {
        format!("COMPREPLY=( $(compgen -f -X '!*.{ext}' -- \"$cur\") $(compgen -d -- \"$cur\") )")
    };
    format!(
        "_gemfilter_completions() {{\n\
         \x20   local cur prev opts\n\
         \x20   COMPREPLY=()\n\
         \x20   cur=\"${{COMP_WORDS[COMP_CWORD]}}\"\n\
         \x20   prev=\"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\n\
         \x20   opts=\"{}\"\n\n\
         \x20   case \"$prev\" in\n\
         \x20       --model|-m|--gem-draft|--lora|--control-vector)\n\
         \x20           {}\n\
         \x20           return 0\n\
         \x20           ;;\n\
         \x20       --grammar-file)\n\
         \x20           {}\n\
         \x20           return 0\n\
         \x20           ;;\n\
         \x20       --chat-template-file)\n\
         \x20           {}\n\
         \x20           return 0\n\
         \x20           ;;\n\
         \x20       -f|--file|-sysf|--system-prompt-file|-bf|--binary-file|-jf|--json-schema-file|--prompt-cache|-o|--output|--output-file|--log-file)\n\
         \x20           COMPREPLY=( $(compgen -f -- \"$cur\") )\n\
         \x20           return 0\n\
         \x20           ;;\n\
         \x20       *)\n\
         \x20           COMPREPLY=( $(compgen -W \"${{opts}}\" -- \"$cur\") )\n\
         \x20           return 0\n\
         \x20           ;;\n\
         \x20   esac\n\
         }}\n\n\
         complete -F _gemfilter_completions gemfilter\n",
        names.join(" "),
        files("gguf"),
        files("gbnf"),
        files("jinja"),
    )
}

/// docs/options.md: every option with its status, from this table and clap's help.
#[must_use]
pub fn markdown(help: &dyn Fn(&str) -> Option<String>) -> String {
    let (acc, refused) = counts();
    let mut s = format!(
        "# llama-cli options in gemfilter\n\n\
         Generated from the option table (`src/cli/defs.rs`) by `gemfilter --help-options`; the\n\
         table is checked against llama.cpp's `common/arg.cpp`. {acc} of {} options are accepted,\n\
         {refused} are refused by name with the reason.\n\n\
         Names are whole words as in llama.cpp (`-co` is `--color`, never `-c o`); a value is the\n\
         next argument; `LLAMA_ARG_*` variables apply unless the command line gives the option.\n\n\
         Status: **applied** (it changes the run as in llama.cpp), **no effect** (accepted; it\n\
         cannot change the answer here, and a notice says so), **accepted** (display or logging\n\
         only, or what gemfilter does anyway), **refused** (an error that says why).\n\n\
         | option | env | status | meaning here |\n|---|---|---|---|\n",
        TABLE.len()
    );
    for o in TABLE {
        let mut names = o.names.join(", ");
        if let Some(v) = o.value {
            names = format!("{names} {v}");
        }
        let mut row = |names: &str, does: Does| {
            let (status, text) = match does {
                Clap(long) => ("applied", help(long).unwrap_or_default()),
                Noted(why) => ("no effect", why.to_owned()),
                Quiet(why) => ("accepted", why.to_owned()),
                Refused(why) => ("refused", why.to_owned()),
                Preset(args) => (
                    "applied",
                    format!(
                        "llama.cpp's preset, the model from its local cache: {} (options given on the command line win)",
                        args.iter()
                            .map(|(l, v)| if v.is_empty() { format!("`--{l}`") } else { format!("`--{l} {v}`") })
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                ),
            };
            let text = text.replace('\n', " ").replace('|', "\\|");
            let names = names.replace('|', "\\|");
            let env = o.env.map_or(String::new(), |e| format!("`{e}`"));
            let _ = writeln!(s, "| `{names}` | {env} | {status} | {text} |");
        };
        if o.neg.is_empty() || o.does == o.does_neg {
            let all: Vec<&str> = o.names.iter().chain(o.neg).copied().collect();
            let mut n = all.join(", ");
            if let Some(v) = o.value {
                n = format!("{n} {v}");
            }
            row(&n, o.does);
        } else {
            row(&names, o.does);
            row(&o.neg.join(", "), o.does_neg);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex_default(args: &[&str]) -> Result<Lexed, String> {
        let argv: Vec<OsString> = std::iter::once("gemfilter")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect();
        lex(&argv, None, &|_| None)
    }

    fn strs(l: &Lexed) -> Vec<String> {
        l.args[1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn no_name_twice() {
        let mut names = HashSet::new();
        for o in TABLE {
            for n in o.names.iter().chain(o.neg) {
                assert!(names.insert(*n), "{n} defined twice");
            }
        }
    }

    #[test]
    fn multi_letter_names_are_whole_words() {
        let l = lex_default(&["-co", "on", "-c", "64", "-fa", "1", "-n", "-1"]).unwrap();
        assert_eq!(
            strs(&l),
            ["--ctx-size=64", "--flash-attn=1", "--n-predict=-1"]
        );
        let e = lex_default(&["-mu", "https://example.com/m.gguf"]).unwrap_err();
        assert!(e.starts_with("-mu: downloads are not supported"), "{e}");
        let l = lex_default(&["-hf", "org/repo"]).unwrap();
        assert_eq!(strs(&l), ["--hf-repo=org/repo"]);
        let e = lex_default(&["-cz"]).unwrap_err();
        assert!(e.contains("unknown option '-cz'"), "{e}");
        assert!(lex_default(&["-fa"])
            .unwrap_err()
            .contains("-fa expects a value"));
    }

    #[test]
    fn negations_underscores_and_notices() {
        let l = lex_default(&["--no_display_prompt", "-no-cnv", "--prio", "2"]).unwrap();
        assert_eq!(strs(&l), ["--no-display-prompt", "--no-conversation"]);
        assert_eq!(l.notices.len(), 1);
        assert!(l.notices[0].starts_with("--prio has no effect here"));
    }

    #[test]
    fn presets_fill_what_the_command_line_leaves() {
        let l = lex_default(&["--vision-gemma-4b-default", "-c", "512", "--no-jinja"]).unwrap();
        assert_eq!(
            strs(&l),
            [
                "--ctx-size=512",
                "--no-jinja",
                "--hf-repo=ggml-org/gemma-3-4b-it-qat-GGUF"
            ]
        );
        let l = lex_default(&["--gpt-oss-20b-default"]).unwrap();
        assert!(strs(&l).contains(&"--hf-file=gpt-oss-20b-mxfp4.gguf".to_owned()));
        assert!(strs(&l).contains(&"--jinja".to_owned()));
    }

    #[test]
    fn environment_under_the_command_line() {
        let argv: Vec<OsString> = ["gemfilter", "-c", "128"].iter().map(Into::into).collect();
        let env = |k: &str| match k {
            "LLAMA_ARG_CTX_SIZE" => Some("4096".to_owned()),
            "LLAMA_ARG_TOP_K" => Some("7".to_owned()),
            "LLAMA_ARG_NO_PERF" => Some("1".to_owned()),
            _ => None,
        };
        let l = lex(&argv, None, &env).unwrap();
        let s = strs(&l);
        assert_eq!(s[0], "--ctx-size=128");
        assert!(s.contains(&"--top-k=7".to_owned()) && s.contains(&"--no-perf".to_owned()));
        assert!(!s.contains(&"--ctx-size=4096".to_owned()));
        assert!(l.notices[0].contains("LLAMA_ARG_CTX_SIZE is set"));
        let bad = |k: &str| (k == "LLAMA_ARG_PERF").then(|| "maybe".to_owned());
        assert!(lex(&argv, None, &bad)
            .unwrap_err()
            .contains("invalid boolean"));
    }
}
