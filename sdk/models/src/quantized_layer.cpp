#include "mcompress/models/quantized_layer.h"

#include "mcompress/models/graph.h"

namespace mcompress {

std::vector<QuantizedLayerView> quantized_layers(const torch::jit::Module& model) {
  std::vector<QuantizedLayerView> layers;
  for (const auto& named : model.named_modules()) {
    const auto& type = named.value.type();
    if (!type->hasAttribute(kPackedWeightName) || !type->hasAttribute(kBitsName)) continue;
    QuantizedLayerView view;
    view.path = named.name;
    view.packed = *own_tensor(named.value, kPackedWeightName);
    view.scales = *own_tensor(named.value, kScalesName);
    view.biases = *own_tensor(named.value, kBiasesName);
    if (auto bias = own_tensor(named.value, "bias")) view.bias = *bias;
    view.bits = int(named.value.attr(kBitsName).toInt());
    view.group_size = int(named.value.attr(kGroupSizeName).toInt());
    layers.push_back(view);
  }
  return layers;
}

int64_t quantized_weight_elements(const torch::jit::Module& model) {
  int64_t total = 0;
  for (const auto& layer : quantized_layers(model)) total += layer.out_features() * layer.in_features();
  return total;
}

}  // namespace mcompress
