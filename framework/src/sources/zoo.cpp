#include "mcompress/framework/sources/zoo.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include <fmt/format.h>

#include "mcompress/sdk/error.h"
#include "zoo_llama.h"

namespace mcompress {
namespace {

using torch::jit::Module;

// Every layer is its own submodule with registered parameters and buffers, so
// the pruning code finds "<path>.weight" through prim::GetAttr chains and can
// swap in smaller tensors with register_parameter/register_buffer. Each
// module gets its own (mangled) class type: replacing a tensor on one
// instance must never be seen by another.
class LayerFactory {
 public:
  explicit LayerFactory(uint64_t seed)
      : unit_(std::make_shared<torch::jit::CompilationUnit>()),
        generator_(at::make_generator<at::CPUGeneratorImpl>(seed)) {}

  // A module of class `kind` in training mode; `training` must exist because
  // Module::train()/eval() set it on every submodule.
  Module new_module(const std::string& kind) {
    Module module(c10::QualifiedName("__torch__.mcompress.zoo." + kind), unit_,
                  /*shouldMangle=*/true);
    module.register_attribute("training", c10::BoolType::get(), true);
    return module;
  }

  Module linear(int64_t in, int64_t out) {
    Module m = new_module("Linear");
    add_parameter(m, "weight", uniform({out, in}, in));
    add_parameter(m, "bias", uniform({out}, in));
    m.define(R"(
def forward(self, x: Tensor) -> Tensor:
    return torch.linear(x, self.weight, self.bias)
)");
    return m;
  }

  // Bias-free, as convolutions are always followed by batch norm here.
  Module conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
    Module m = new_module("Conv2d");
    add_parameter(m, "weight", uniform({out, in, kernel, kernel}, in * kernel * kernel));
    m.define(fmt::format(R"(
def forward(self, x: Tensor) -> Tensor:
    return torch.conv2d(x, self.weight, None, [{0}, {0}], [{1}, {1}])
)",
                         stride, padding));
    return m;
  }

  Module layer_norm(int64_t features) {
    Module m = new_module("LayerNorm");
    add_parameter(m, "weight", torch::ones({features}));
    add_parameter(m, "bias", torch::zeros({features}));
    m.define(R"(
def forward(self, x: Tensor) -> Tensor:
    return torch.layer_norm(x, [self.weight.size(0)], self.weight, self.bias, 1e-05, False)
)");
    return m;
  }

  // N(0, 0.02), as GPT-2 initialises embeddings.
  torch::Tensor embedding_table(int64_t rows, int64_t width) {
    return torch::empty({rows, width}).normal_(0.0, 0.02, generator_);
  }

  Module batch_norm(int64_t channels) {
    Module m = new_module("BatchNorm2d");
    add_parameter(m, "weight", torch::ones({channels}));
    add_parameter(m, "bias", torch::zeros({channels}));
    m.register_buffer("running_mean", torch::zeros({channels}));
    m.register_buffer("running_var", torch::ones({channels}));
    // PyTorch's defaults: momentum 0.1, eps 1e-5.
    m.define(R"(
def forward(self, x: Tensor) -> Tensor:
    return torch.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                            self.training, 0.1, 1e-05, False)
)");
    return m;
  }

  static void add_parameter(Module& m, const std::string& name, torch::Tensor value) {
    value.set_requires_grad(true);
    m.register_parameter(name, value, /*is_buffer=*/false);
  }

 private:

  // PyTorch's default Linear/Conv init: kaiming_uniform(a=sqrt(5)) for the
  // weight and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias share one bound.
  torch::Tensor uniform(at::IntArrayRef sizes, int64_t fan_in) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    return torch::empty(sizes).uniform_(-bound, bound, generator_);
  }

  std::shared_ptr<torch::jit::CompilationUnit> unit_;
  at::Generator generator_;
};

constexpr int64_t kInputSide = 28;  // the zoo is built for [N, 1, 28, 28]

Module build_mlp(LayerFactory& f, int64_t width, int64_t classes) {
  Module m = f.new_module("MLP");
  m.register_module("fc1", f.linear(kInputSide * kInputSide, 4 * width));
  m.register_module("fc2", f.linear(4 * width, 2 * width));
  m.register_module("fc3", f.linear(2 * width, classes));
  m.define(R"(
def forward(self, x: Tensor) -> Tensor:
    x = torch.flatten(x, 1)
    x = torch.relu(self.fc1.forward(x))
    x = torch.relu(self.fc2.forward(x))
    return self.fc3.forward(x)
)");
  return m;
}

Module build_cnn(LayerFactory& f, int64_t width, int64_t classes) {
  Module m = f.new_module("CNN");
  m.register_module("conv1", f.conv(1, width, 3, 1, 1));
  m.register_module("bn1", f.batch_norm(width));
  m.register_module("conv2", f.conv(width, 2 * width, 3, 1, 1));
  m.register_module("bn2", f.batch_norm(2 * width));
  // Two 2x2 poolings take 28x28 to 7x7.
  m.register_module("fc1", f.linear(2 * width * 7 * 7, 4 * width));
  m.register_module("fc2", f.linear(4 * width, classes));
  m.define(R"(
def forward(self, x: Tensor) -> Tensor:
    x = torch.max_pool2d(torch.relu(self.bn1.forward(self.conv1.forward(x))), [2, 2])
    x = torch.max_pool2d(torch.relu(self.bn2.forward(self.conv2.forward(x))), [2, 2])
    x = torch.flatten(x, 1)
    x = torch.relu(self.fc1.forward(x))
    return self.fc2.forward(x)
)");
  return m;
}

// conv-BN-relu-conv-BN plus a shortcut, then relu. The shortcut is the
// identity unless the shape changes, then a 1x1 conv + BN projection.
Module basic_block(LayerFactory& f, int64_t in, int64_t out, int64_t stride) {
  Module m = f.new_module("BasicBlock");
  m.register_module("conv1", f.conv(in, out, 3, stride, 1));
  m.register_module("bn1", f.batch_norm(out));
  m.register_module("conv2", f.conv(out, out, 3, 1, 1));
  m.register_module("bn2", f.batch_norm(out));
  std::string shortcut = "x";
  if (stride != 1 || in != out) {
    Module downsample = f.new_module("Downsample");
    downsample.register_module("conv", f.conv(in, out, 1, stride, 0));
    downsample.register_module("bn", f.batch_norm(out));
    downsample.define(R"(
def forward(self, x: Tensor) -> Tensor:
    return self.bn.forward(self.conv.forward(x))
)");
    m.register_module("downsample", downsample);
    shortcut = "self.downsample.forward(x)";
  }
  m.define(fmt::format(R"(
def forward(self, x: Tensor) -> Tensor:
    out = torch.relu(self.bn1.forward(self.conv1.forward(x)))
    out = self.bn2.forward(self.conv2.forward(out))
    return torch.relu(out + {})
)",
                       shortcut));
  return m;
}

// Blocks are named block0, block1, ... because TorchScript source cannot
// spell a numeric attribute (self.0).
Module resnet_stage(LayerFactory& f, int64_t in, int64_t out, int64_t stride, int64_t blocks) {
  Module m = f.new_module("Stage");
  std::string body;
  for (int64_t i = 0; i < blocks; ++i) {
    const std::string name = fmt::format("block{}", i);
    m.register_module(name, basic_block(f, i == 0 ? in : out, out, i == 0 ? stride : 1));
    body += fmt::format("    x = self.{}.forward(x)\n", name);
  }
  m.define("def forward(self, x: Tensor) -> Tensor:\n" + body + "    return x\n");
  return m;
}

Module build_resnet(LayerFactory& f, int64_t width, int64_t blocks, int64_t classes) {
  Module m = f.new_module("ResNet");
  m.register_module("conv1", f.conv(1, width, 3, 1, 1));
  m.register_module("bn1", f.batch_norm(width));
  m.register_module("layer1", resnet_stage(f, width, width, 1, blocks));
  m.register_module("layer2", resnet_stage(f, width, 2 * width, 2, blocks));
  m.register_module("fc", f.linear(2 * width, classes));
  m.define(R"(
def forward(self, x: Tensor) -> Tensor:
    x = torch.relu(self.bn1.forward(self.conv1.forward(x)))
    x = self.layer2.forward(self.layer1.forward(x))
    x = torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1)
    return self.fc.forward(x)
)");
  return m;
}

// Causal multi-head self-attention; the mask is built per call so the model
// accepts any sequence length up to its context.
Module causal_self_attention(LayerFactory& f, int64_t width, int64_t heads) {
  Module m = f.new_module("CausalSelfAttention");
  m.register_module("qkv", f.linear(width, 3 * width));
  m.register_module("proj", f.linear(width, width));
  m.register_attribute("heads", c10::IntType::get(), heads);
  m.define(R"(
def forward(self, x: Tensor) -> Tensor:
    B = x.size(0)
    T = x.size(1)
    C = x.size(2)
    q, k, v = self.qkv.forward(x).split(C, 2)
    hs = C // self.heads
    q = q.view([B, T, self.heads, hs]).transpose(1, 2)
    k = k.view([B, T, self.heads, hs]).transpose(1, 2)
    v = v.view([B, T, self.heads, hs]).transpose(1, 2)
    scores = torch.matmul(q, k.transpose(-2, -1)) * (float(hs) ** -0.5)
    future = torch.ones([T, T], device=x.device).triu(1) > 0.5
    scores = scores.masked_fill(future, float("-inf"))
    y = torch.matmul(torch.softmax(scores, -1), v)
    return self.proj.forward(y.transpose(1, 2).reshape([B, T, C]))
)");
  return m;
}

// Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x)).
Module transformer_block(LayerFactory& f, int64_t width, int64_t heads) {
  Module m = f.new_module("TransformerBlock");
  m.register_module("ln1", f.layer_norm(width));
  m.register_module("attn", causal_self_attention(f, width, heads));
  m.register_module("ln2", f.layer_norm(width));
  m.register_module("fc", f.linear(width, 4 * width));
  m.register_module("proj", f.linear(4 * width, width));
  m.define(R"(
def forward(self, x: Tensor) -> Tensor:
    x = x + self.attn.forward(self.ln1.forward(x))
    return x + self.proj.forward(torch.gelu(self.fc.forward(self.ln2.forward(x))))
)");
  return m;
}

Module build_char_lm(LayerFactory& f, int64_t width, int64_t layers, int64_t heads,
                     int64_t context, int64_t vocabulary) {
  if (width % heads != 0) {
    throw Error(fmt::format("zoo model 'char_lm': width {} must be a multiple of heads {}", width,
                            heads));
  }
  Module m = f.new_module("CharLM");
  LayerFactory::add_parameter(m, "token_embedding", f.embedding_table(vocabulary, width));
  LayerFactory::add_parameter(m, "position_embedding", f.embedding_table(context, width));
  std::string body;
  for (int64_t i = 0; i < layers; ++i) {
    const std::string name = fmt::format("block{}", i);
    m.register_module(name, transformer_block(f, width, heads));
    body += fmt::format("    h = self.{}.forward(h)\n", name);
  }
  m.register_module("ln_f", f.layer_norm(width));
  m.register_module("head", f.linear(width, vocabulary));
  m.define(R"(
def forward(self, x: Tensor) -> Tensor:
    T = x.size(1)
    assert T <= self.position_embedding.size(0), "the sequence is longer than the model's context"
    h = torch.embedding(self.token_embedding, x) + self.position_embedding[:T]
)" + body + R"(    return self.head.forward(self.ln_f.forward(h))
)");
  return m;
}

struct OptionDefault {
  std::string name;
  int64_t value;
};

std::vector<OptionDefault> option_defaults(const std::string& model) {
  if (model == "mlp") return {{"width", 64}};
  if (model == "cnn") return {{"width", 16}};
  if (model == "char_lm") return {{"width", 64}, {"layers", 2}, {"heads", 4}, {"context", 64}};
  if (model == "llama") {
    std::vector<OptionDefault> defaults;
    for (const auto& [name, value] : llama_zoo_defaults()) defaults.push_back({name, value});
    return defaults;
  }
  return {{"width", 16}, {"blocks", 1}};  // resnet
}

std::string join_names(const std::vector<std::string>& names) {
  return fmt::format("{}", fmt::join(names, ", "));
}

// The options with defaults filled in; rejects unknown names and values < 1.
std::map<std::string, int64_t> resolve_options(const std::string& model,
                                               const std::map<std::string, int64_t>& given) {
  std::map<std::string, int64_t> resolved;
  std::vector<std::string> known;
  for (const auto& option : option_defaults(model)) {
    resolved[option.name] = option.value;
    known.push_back(option.name);
  }
  for (const auto& [name, value] : given) {
    if (!resolved.count(name)) {
      throw Error(fmt::format("zoo model '{}' has no option '{}'; its options are: {}", model, name,
                              join_names(known)));
    }
    if (value < 1 || value > 4096) {
      throw Error(fmt::format("zoo model '{}': option '{}' must be in [1, 4096], got {}", model,
                              name, value));
    }
    resolved[name] = value;
  }
  return resolved;
}

}  // namespace

std::vector<ZooModelInfo> zoo_models() {
  return {
      {"mlp", "flatten -> Linear(784, 4w) -> relu -> Linear(4w, 2w) -> relu -> Linear(2w, classes); w=64",
       {"width"}},
      {"cnn",
       "two conv3x3+BN+relu+maxpool blocks (w, 2w channels) -> Linear(2w*7*7, 4w) -> relu -> "
       "Linear(4w, classes); w=16",
       {"width"}},
      {"resnet",
       "stem conv+BN+relu, two stages of basic residual blocks (w and 2w channels, the second "
       "with stride 2 and a 1x1 projection shortcut), global average pool, Linear; w=16, blocks=1",
       {"width", "blocks"}},
      {"char_lm",
       "character-level decoder-only transformer: token + position embeddings, `layers` pre-norm "
       "blocks (causal self-attention with `heads` heads, MLP 4w), LayerNorm, Linear to the "
       "vocabulary; tokens [N, T<=context] -> logits [N, T, vocabulary]; w=64, layers=2, heads=4, "
       "context=64",
       {"width", "layers", "heads", "context"},
       /*takes_tokens=*/true},
      {"llama",
       "a Hugging Face Llama (RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP, tied "
       "embeddings) written and read as a checkpoint directory; tokens [N, T] -> logits [N, T, "
       "vocabulary]; width=256, layers=4, heads=8, kv_heads=4, intermediate=768, context=256",
       {"context", "heads", "intermediate", "kv_heads", "layers", "width"},
       /*takes_tokens=*/true},
  };
}

std::map<std::string, int64_t> resolved_zoo_options(const std::string& name,
                                                    const std::map<std::string, int64_t>& options) {
  for (const auto& info : zoo_models())
    if (info.name == name) return resolve_options(name, options);
  throw Error(fmt::format("unknown zoo model '{}'", name));
}

torch::jit::Module build_zoo_model(const std::string& name,
                                   const std::map<std::string, int64_t>& options,
                                   int64_t num_classes, uint64_t seed) {
  std::vector<std::string> names;
  for (const auto& info : zoo_models()) names.push_back(info.name);
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    throw Error(fmt::format("unknown zoo model '{}'; built-in models are: {}", name,
                            join_names(names)));
  }
  if (num_classes < 1) {
    throw Error(fmt::format("zoo model '{}': num_classes must be at least 1, got {}", name,
                            num_classes));
  }
  const auto resolved = resolve_options(name, options);
  if (name == "llama") return build_zoo_llama(resolved, num_classes, seed);
  LayerFactory factory(seed);
  const int64_t width = resolved.at("width");
  if (name == "mlp") return build_mlp(factory, width, num_classes);
  if (name == "cnn") return build_cnn(factory, width, num_classes);
  if (name == "char_lm") {
    return build_char_lm(factory, width, resolved.at("layers"), resolved.at("heads"),
                         resolved.at("context"), num_classes);
  }
  return build_resnet(factory, width, resolved.at("blocks"), num_classes);
}

}  // namespace mcompress
