// kd_attribution: attribution-based distillation. Beyond Hinton KD the student
// is taught *where* the teacher looks: the attention maps of matched
// intermediate feature maps (Zagoruyko & Komodakis 2017) and the teacher's
// input attribution maps (gradient × input, or integrated gradients), each
// normalised per sample so a narrow student is compared by shape, not scale:
//
//   loss = α·T²·KL(p_t ‖ p_s) + (1 − α)·CE + β · (Σ_layers ‖a_s − a_t‖² + ‖m_s − m_t‖²)
//
// Cost: the student's attribution map must itself be trained, so its input
// gradient is differentiated again (double backward): a student forward, a
// backward that keeps its graph, and a backward through both, plus a teacher
// forward and backward. Double backward of conv/BN/max-pool is slow in
// LibTorch's CPU kernels: on the zoo CNN (bench/, 2 threads) a gradient ×
// input step ran at 239 samples/s against kd_standard's 3905, about 16x the
// cost. Integrated gradients with m steps add forward and double-backward
// passes over m times the batch. Attention transfer alone (`attribution:
// none`) costs little more than kd_standard.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <set>

#include "mcompress/training/attribution.h"
#include "mcompress/training/distillation.h"
#include "mcompress/sdk/error.h"
#include "mcompress/models/evaluate.h"
#include "mcompress/models/layer_taps.h"
#include "mcompress/sdk/plugin.h"
#include "mcompress/training/trainer.h"

namespace {

using mcompress::Error;
using mcompress::ParamSpec;

struct LayerPairs {
  std::vector<std::string> student;
  std::vector<std::string> teacher;
};

std::vector<std::string> conv_layers(const torch::jit::Module& model) {
  std::vector<std::string> paths;
  for (const auto& layer : mcompress::tappable_layers(model))
    if (layer.op == "conv") paths.push_back(layer.path);
  return paths;
}

// "student_layer:teacher_layer" pairs, or "layer" for the same name in both;
// none given: every conv layer of the student whose namesake in the teacher is
// a conv layer (a pruned or narrower copy of the teacher keeps its layer names).
LayerPairs pair_layers(const torch::jit::Module& student, const torch::jit::Module& teacher,
                       const std::vector<std::string>& given) {
  LayerPairs pairs;
  if (!given.empty()) {
    for (const auto& entry : given) {
      const auto colon = entry.find(':');
      pairs.student.push_back(entry.substr(0, colon));
      pairs.teacher.push_back(colon == std::string::npos ? entry : entry.substr(colon + 1));
    }
    return pairs;
  }
  const auto teacher_convs = conv_layers(teacher);
  const std::set<std::string> in_teacher(teacher_convs.begin(), teacher_convs.end());
  for (const auto& path : conv_layers(student)) {
    if (in_teacher.count(path)) {
      pairs.student.push_back(path);
      pairs.teacher.push_back(path);
    }
  }
  if (pairs.student.empty()) {
    throw Error(fmt::format(
        "no conv layer of the student has a namesake in the teacher, so attention maps cannot be "
        "matched automatically; name pairs with `layer_pairs: [student_layer:teacher_layer, "
        "...]` or set `attention: false`. Student conv layers: {}; teacher conv layers: {}",
        fmt::join(conv_layers(student), ", "), fmt::join(teacher_convs, ", ")));
  }
  return pairs;
}

std::optional<mcompress::AttributionMethod> method_from(const std::string& name) {
  if (name == "gradient_x_input") return mcompress::AttributionMethod::GradientTimesInput;
  if (name == "integrated_gradients") return mcompress::AttributionMethod::IntegratedGradients;
  return std::nullopt;  // "none"
}

class KdAttributionPass final : public mcompress::Pass {
 public:
  KdAttributionPass() {
    info_.name = "kd_attribution";
    info_.summary = "attribution distillation: Hinton KD plus matching the teacher's attention "
                    "maps and input-gradient attribution maps";
    info_.kind = mcompress::PassKind::Distill;
    info_.needs.train_data = true;
    info_.needs.teacher = true;
    info_.params = {
        ParamSpec::Float("temperature", 4.0, 0.1, 100.0, "softmax temperature T of the KD term"),
        ParamSpec::Float("alpha", 0.9, 0.0, 1.0,
                         "weight of the KD term; 1 - alpha weighs cross-entropy"),
        ParamSpec::Float("beta", 1.0, 0.0, 1e6,
                         "weight of the map terms (squared distances of per-sample normalised maps)"),
        ParamSpec::Bool("attention", true,
                        "match attention maps (mean squared activation over channels) of paired "
                        "conv layers"),
        ParamSpec::Choice("attribution", "gradient_x_input",
                          {"none", "gradient_x_input", "integrated_gradients"},
                          "input attribution map to match (needs double backward)"),
        ParamSpec::Int("ig_steps", 8, 1, 256, "integrated-gradients path steps"),
        ParamSpec::StringList("layer_pairs", {},
                              "student_layer:teacher_layer pairs for attention maps (empty: conv "
                              "layers with the same name in both)"),
    };
    for (auto& spec : mcompress::training_param_specs()) info_.params.push_back(std::move(spec));
  }

  const mcompress::PassInfo& info() const override { return info_; }

  mcompress::PassResult run(mcompress::PassContext& ctx) const override {
    const double temperature = ctx.params->get_float("temperature");
    const double alpha = ctx.params->get_float("alpha");
    const double beta = ctx.params->get_float("beta");
    const bool attention = ctx.params->get_bool("attention");
    const auto method = method_from(ctx.params->get_string("attribution"));
    const int64_t ig_steps = ctx.params->get_int("ig_steps");
    const auto options = mcompress::training_options_from(*ctx.params, ctx.seed);
    if (method && !ctx.train->inputs.is_floating_point()) {
      throw Error("input attribution needs continuous inputs such as images; this data holds "
                  "token ids: set `attribution: none`");
    }
    const torch::jit::Module& teacher = *ctx.teacher;
    LayerPairs pairs;
    if (attention) pairs = pair_layers(ctx.model, teacher, ctx.params->get_strings("layer_pairs"));
    const mcompress::LayerTaps student_taps(ctx.model, pairs.student);
    const mcompress::LayerTaps teacher_taps(teacher, pairs.teacher);

    double attention_total = 0.0;
    double attribution_total = 0.0;
    int64_t steps = 0;
    const mcompress::ModelLoss loss = [&](torch::jit::Module& student,
                                          const mcompress::Batch& batch) {
      // The teacher: eval mode, and gradients only with respect to its input.
      torch::Tensor teacher_logits, classes, teacher_map;
      std::vector<torch::Tensor> teacher_features;
      {
        mcompress::EvalModeGuard eval_mode(teacher);
        const bool same_pass = method == mcompress::AttributionMethod::GradientTimesInput;
        auto x = batch.inputs.detach().clone().requires_grad_(same_pass);
        torch::AutoGradMode grad_mode(same_pass);
        auto taps = teacher_taps.run(x);
        teacher_logits = taps.output.detach();
        classes = teacher_logits.argmax(1);
        for (auto& f : taps.layers) teacher_features.push_back(f.detach());
        if (same_pass) {
          teacher_map = mcompress::attribution_map(
              mcompress::gradient_times_input(taps.output, x, classes, false)).detach();
        } else if (method) {
          torch::AutoGradMode enable(true);
          const auto forward = [&](const torch::Tensor& in) {
            return mcompress::forward_tensor(teacher, in);
          };
          teacher_map = mcompress::attribution_map(mcompress::input_attribution(
              forward, batch.inputs, classes, {*method, ig_steps, false})).detach();
        }
      }
      // The student in training mode, its maps kept differentiable.
      const bool same_pass = method == mcompress::AttributionMethod::GradientTimesInput;
      auto x = same_pass ? batch.inputs.detach().clone().requires_grad_(true) : batch.inputs;
      auto taps = student_taps.run(x);
      auto total = mcompress::hinton_kd_loss(taps.output, teacher_logits, batch.targets,
                                             temperature, alpha);
      torch::Tensor maps = torch::zeros({}, total.options());
      for (size_t i = 0; i < taps.layers.size(); ++i) {
        const auto term = mcompress::map_distance(mcompress::attention_map(taps.layers[i]),
                                                  mcompress::attention_map(teacher_features[i]));
        attention_total += term.item<double>();
        maps = maps + term;
      }
      if (method) {
        torch::Tensor student_attribution;
        if (same_pass) {
          student_attribution = mcompress::gradient_times_input(taps.output, x, classes, true);
        } else {
          // Interpolated inputs would skew batch statistics and move running
          // ones, so the path is evaluated in eval mode.
          mcompress::EvalModeGuard eval_mode(student);
          const auto forward = [&](const torch::Tensor& in) {
            return mcompress::forward_tensor(student, in);
          };
          student_attribution =
              mcompress::input_attribution(forward, batch.inputs, classes, {*method, ig_steps, true});
        }
        const auto term =
            mcompress::map_distance(mcompress::attribution_map(student_attribution), teacher_map);
        attribution_total += term.item<double>();
        maps = maps + term;
      }
      ++steps;
      return total + beta * maps;
    };
    const auto summary = mcompress::train_model(ctx.model, *ctx.train, ctx.validation.get(),
                                                options, loss, *ctx.progress, *ctx.log);

    const double mean_attention = steps ? attention_total / double(steps) : 0.0;
    const double mean_attribution = steps ? attribution_total / double(steps) : 0.0;
    return mcompress::training_result(
        summary,
        fmt::format("{} steps, final loss {:.4f} (attention-map distance {:.4f} summed over {} "
                    "layer pairs, attribution-map distance {:.4f}), {:.0f} samples/s",
                    summary.steps, summary.final_loss, mean_attention, pairs.student.size(),
                    mean_attribution, summary.samples_per_second),
        {{"student_layers", pairs.student},
         {"teacher_layers", pairs.teacher},
         {"mean_attention_distance", mean_attention},
         {"mean_attribution_distance", mean_attribution}});
  }

 private:
  mcompress::PassInfo info_;
};

void register_passes(mcompress::PassRegistry& registry) {
  registry.add(std::make_unique<KdAttributionPass>());
}

}  // namespace

MCOMPRESS_PLUGIN("kd_attribution", "1.0.0", register_passes)
