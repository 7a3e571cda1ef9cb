"""The course's glossary: English terms, their Chinese names, and a one-line definition.

Each entry is ``(terms, chinese, definition)``; the first term is the entry's name, the others are synonyms that
also link to it. ``camlab docs build`` writes ``glossary.md`` from this list, and the ``camlab_docs`` extension links
the first use of each entry on every chapter page to it. A term with a capital letter matches case-sensitively
(``CAM`` is not "cam"), the others in any case; a match never sits inside a longer word or hyphenated name
(``CAM`` inside ``Grad-CAM`` does not count).
"""

GLOSSARY = [
    (("class activation map", "class activation mapping", "CAM"), "类激活图（类激活映射）",
     "A heat map over the input that shows which positions raised the score of one class; CAM proper "
     "(Zhou et al., 2016) weights the last feature maps by a GAP network's classifier weights."),
    (("global average pooling", "GAP"), "全局平均池化",
     "Averaging each channel of a feature map over all positions, giving one number per channel; CAM needs a "
     "GAP layer followed by one linear layer."),
    (("weakly supervised localization", "weakly-supervised localization"), "弱监督定位",
     "Finding where an object is (a box) with a model trained only on image-level labels, by thresholding its "
     "class activation map."),
    (("gradient saturation", "saturation"), "梯度饱和",
     "When a score no longer changes with a feature (a saturated sigmoid or softmax, a flat ReLU region), its "
     "gradient is near 0 although the feature matters; gradient-weighted maps then miss it."),
    (("Grad-CAM", "gradient-weighted class activation mapping"), "梯度加权类激活映射（Grad-CAM）",
     "Selvaraju et al., 2017: channel weights are the spatial mean of the gradient of the class score with respect "
     "to the feature map, so any layer and any differentiable score can be explained."),
    (("Grad-CAM++",), "Grad-CAM++（改进的梯度加权类激活映射）",
     "Chattopadhyay et al., 2018: weights positive gradients per position with higher-order terms, so several "
     "instances of a class each get their share."),
    (("Score-CAM",), "Score-CAM（基于分数的类激活映射）",
     "Wang et al., 2020: a gradient-free method that masks the input with each upsampled channel and weights the "
     "channel by the score the masked input gets."),
    (("LayerCAM",), "LayerCAM（逐层类激活图）",
     "Jiang et al., 2021: weights each position by its own positive gradient, so shallow layers give fine maps that "
     "can be fused."),
    (("guided backpropagation", "guided backprop"), "导向反向传播",
     "Springenberg et al., 2015: backpropagation that passes, at each ReLU, only positive gradients at positive "
     "inputs; sharp but barely class-discriminative pictures."),
    (("deconvnet", "deconvolution network"), "反卷积网络",
     "Zeiler & Fergus, 2014: a backward pass whose ReLU passes only positive gradients, whatever the input was."),
    (("Guided Grad-CAM",), "导向 Grad-CAM",
     "Guided backpropagation multiplied by the upsampled Grad-CAM map: sharp and class-specific."),
    (("saliency map", "saliency"), "显著图",
     "A map of how much each input pixel matters for a score; the vanilla gradient is the simplest one."),
    (("heat map", "heatmap"), "热力图",
     "An explanation drawn as colours over the image: warm where the method says the evidence is."),
    (("feature map",), "特征图",
     "A convolutional layer's output for one image, (C, h, w): C channels on a grid of positions."),
    (("channel",), "通道", "One of the C maps of a layer's output; each responds to one learned pattern."),
    (("logit", "logits"), "逻辑值（未归一化分数）",
     "A classifier's raw score for a class, before the softmax turns the scores into probabilities."),
    (("softmax",), "软最大化函数（softmax）",
     "exp of each logit divided by the sum of the exps: the scores as probabilities that sum to 1."),
    (("counterfactual explanation",), "反事实解释",
     "Grad-CAM with the gradients negated: the regions whose removal would make the model more sure of the class."),
    (("class-discriminative", "class discrimination"), "类别区分性",
     "Whether an explanation changes with the class asked about: a class-discriminative map of 'cat' and of "
     "'espresso' on one image differ."),
    (("faithfulness", "faithful"), "忠实性",
     "Whether a map reflects what the model really uses; measured by removing or keeping the regions it highlights."),
    (("pointing game",), "指向游戏",
     "A hit when a map's maximum lies on the object (within a tolerance); the share of hits is the score."),
    (("intersection over union", "IoU"), "交并比",
     "The area of overlap of two boxes divided by the area of their union; localization counts a box with "
     "IoU >= 0.5 as correct."),
    (("bounding box",), "边界框", "The smallest axis-aligned rectangle around an object."),
    (("occlusion",), "遮挡",
     "Sliding a grey patch over the image and recording how much the score drops at each position."),
    (("deletion", "insertion"), "删除/插入指标",
     "RISE's faithfulness curves: remove (or add) pixels in the order of the map and measure the area under the "
     "score curve; lower deletion and higher insertion are better."),
    (("Average Drop", "Increase in Confidence"), "平均下降率 / 置信度提升",
     "Grad-CAM++'s faithfulness metrics: how much the class probability drops when only the map's regions are kept, "
     "and how often it rises."),
    (("sanity check", "model randomization"), "合理性检验（模型随机化）",
     "Adebayo et al., 2018: re-initialise the model's layers from the top; a method whose maps stay the same does not "
     "explain what the model learned."),
    (("attention rollout",), "注意力展开（注意力传播）",
     "Abnar & Zuidema, 2020: multiply a transformer's attention matrices (plus the identity for the residual) through "
     "the layers and read the class token's row."),
    (("Vision Transformer", "ViT"), "视觉 Transformer",
     "An image classifier that cuts the image into patches, turns each into a token and mixes the tokens with "
     "self-attention."),
    (("token", "class token", "patch token"), "词元（类别词元、图像块词元）",
     "One vector of a transformer's sequence: one per image patch, plus a class token that the head reads."),
    (("upsampling", "upsampled"), "上采样",
     "Resizing a coarse map (e.g. 7x7) to the input's size, bilinearly in camlab."),
    (("perturbation",), "扰动", "Changing the input (masking, blurring, noise) to see how the score reacts."),
    (("ablation",), "消融", "Removing (zeroing) a part of a model, such as a channel, to measure what it contributed."),
    (("confidence interval",), "置信区间",
     "A range that covers the true value in 95% of repeated experiments; every comparison in the course has one."),
    (("bootstrap",), "自助法（重抽样）",
     "Estimating an interval by recomputing a statistic on many resamples (with replacement) of the cases."),
    (("spurious correlation", "dataset bias", "spurious feature"), "虚假相关（数据集偏差）",
     "A feature that predicts the label in the training data but is not the object, such as a watermark; a biased "
     "model uses it, and its map shows it."),
    (("image captioning", "captioning", "captioner"), "图像描述生成",
     "Generating a sentence that describes an image, one word at a time."),
    (("visual question answering", "VQA"), "视觉问答", "Answering a question about an image."),
    (("semantic segmentation", "segmentation"), "语义分割", "Labelling every pixel with a class."),
    (("forward hook", "hook"), "钩子（前向钩子）",
     "A function PyTorch calls with a module's output during the forward pass; camlab captures activations with one."),
    (("autograd", "torch.autograd.grad"), "自动微分",
     "PyTorch's automatic differentiation; ``torch.autograd.grad`` returns the gradient of a score with respect to "
     "chosen tensors."),
    (("target layer",), "目标层", "The layer whose feature maps a method turns into the explanation."),
]
