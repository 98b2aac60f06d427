"""CLRS-30's encode-process-decode network in PyTorch, built from ``gnnbench.algo.SPECS``.

Mirrors dm-clrs 2.0.3's ``nets.Net`` and ``baselines.BaselineModel`` (``_loss``, ``_predict``;
https://github.com/google-deepmind/clrs/blob/v2.0.3/clrs/_src/nets.py) at the defaults of CLRS-30's
``examples/run.py``: hidden 128, hints encoded and decoded, soft hint re-prediction, no teacher
forcing, layer norm in the processor, ``xavier_on_scalars``, no dropout, one message-passing step
per hint step, no LSTM.

Step t (0, 1, ...) of a batch whose hints are padded to ``T`` steps:

1. encode the inputs and the hints of step t (ground truth at t = 0; after that the previous
   step's decoded hints, post-processed softly: sigmoid, softmax, or hard; with teacher forcing
   ``p`` each trace gets the ground truth instead with probability ``p`` at training), summing node,
   edge and graph features; the adjacency is the identity plus the edges of node pointers and edge
   masks (see :mod:`.encoders`);
2. ``next_hidden, tri = processor(node_fts, edge_fts, graph_fts, adj, hidden)``;
3. decode ``h = [node_fts, hidden, next_hidden]`` and ``e = [edge_fts, tri]`` into the hints of step
   t + 1 and the outputs (see :mod:`.decoders`).

CLRS runs ``max(1, T - 1)`` steps over the whole batch and keeps, per trace, the outputs of step
``max(length - 2, 0)`` (``_is_not_done_broadcast``). Here each trace runs only the steps it needs:
traces are ordered by length, step t runs the still-running prefix of the batch, and the outputs are
decoded once from the states of each trace's last step. The values are CLRS's (the skipped steps only
fed outputs that ``jnp.where`` discards and hint predictions that the loss masks out), and padding a
batch to more steps or bucketing it by length changes nothing; hint predictions after a trace's
last step are 0.

Speed (same values up to float rounding): the inputs are encoded once per forward pass (CLRS re-encodes
them at every step); each location's encoders are one product, the decoders' linears that read one tensor
too; the hint decoders' linears of the edge features are split by linearity into a part computed once
and a per-step part of a few channels (plus the triplet features); the pointer decoders' maximum is
never stored (:func:`.decoders.max_linear`).

``repred`` (CLRS's flag: False at training, True at evaluation) selects ground-truth or predicted
hints only through teacher forcing, and turns dropout off. ``enforce_permutations`` and
``enforce_pred_as_input`` (``run.py``'s other options) change only fields of type
``should_be_permutation`` and ``pred_h`` hints, which none of the twelve graph algorithms has: no-ops
here.

Parameters map one to one onto the haiku parameters of CLRS's ``BaselineModel`` (haiku ``w`` is
``weight.T``, ``b`` is ``bias``); :meth:`EncodeProcessDecode.haiku_names` lists the mapping:

=================================  ===========================================================
torch module                       haiku module
=================================  ===========================================================
``encoders.<field>.0``             ``net/~_construct_encoders_decoders/algo_0_<field>_enc_linear``
``encoders.<field>.1`` (edge ptr)  ``net/~_construct_encoders_decoders/algo_0_<field>_enc_linear_1``
``decoders.<field>.0``             ``net/~_construct_encoders_decoders/algo_0_<field>_dec_linear``
``decoders.<field>.<k>``           ``net/~_construct_encoders_decoders/algo_0_<field>_dec_linear_<k>``
``processor.<attr>``               ``net/<processor.haiku_module>/<processor.haiku_names[attr]>``
=================================  ===========================================================
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...algo.specs import SPECS, Stage, Type, check_algorithm
from ...arguments import check_choice, check_float, check_int
from ..linear import linear
from .batches import TorchBatch
from .decoders import DecoderWeights, construct_decoder, decode, hard_predictions, postprocess
from .encoders import (ENCODER_INITS, EncoderWeights, FieldLayout, Groups, add_linear, adjacency, categorical_classes,
                       channels, construct_encoder, encode, group)
from .losses import hint_loss, output_loss
from .processors import PROCESSORS, make_processor
from .stack import ProcessorStack, chain

HINT_MODES = {"encoded_decoded": (True, True), "decoded_only": (False, True), "none": (False, False)}
HINT_REPRED_MODES = ("soft", "hard", "hard_on_eval")
_HAIKU_NET = "net/~_construct_encoders_decoders/algo_0_"


class EncodeProcessDecode(nn.Module):
    """CLRS-30's network for one algorithm (see the module docstring).

    >>> model = EncodeProcessDecode("bfs", "triplet_gmpnn")
    >>> batch = to_torch(sample("bfs", 32, n=16).clrs_batch())
    >>> model.loss(batch).backward()
    >>> model.predict(batch)  # {'pi': LongTensor [32, 16]}
    """

    def __init__(self, algorithm: str, processor: str | nn.Module = "triplet_gmpnn", hidden: int = 128, *,
                 hint_mode: str = "encoded_decoded", hint_repred_mode: str = "soft", use_ln: bool = True,
                 nb_triplet_fts: int = 8, encoder_init: str = "xavier_on_scalars", nb_heads: int = 1,
                 dropout: float = 0.0, nb_msg_passing_steps: int = 1, hint_teacher_forcing: float = 0.0,
                 num_layers: int = 1, generator: torch.Generator | None = None) -> None:
        """``processor``: a kind (``PROCESSORS``) built here (``num_layers`` of them, stacked), or a module with the
        processor's call and ``emits_edge_fts`` built elsewhere (a multitask network's route through its layers)."""
        super().__init__()
        self.algorithm = check_algorithm(algorithm)
        if not isinstance(processor, nn.Module):
            check_choice("processor", processor, PROCESSORS)
        elif not hasattr(processor, "emits_edge_fts"):
            raise ValueError(f"processor module {type(processor).__name__} lacks emits_edge_fts")
        num_layers = check_int("num_layers", num_layers, minimum=1)
        self.hidden = check_int("hidden", hidden, minimum=1)
        self.encode_hints, self.decode_hints = HINT_MODES[check_choice("hint_mode", hint_mode, tuple(HINT_MODES))]
        self.hint_repred_mode = check_choice("hint_repred_mode", hint_repred_mode, HINT_REPRED_MODES)
        check_choice("encoder_init", encoder_init, ENCODER_INITS)
        self.dropout = check_float("dropout", dropout, minimum=0.0, maximum=1.0, open_max=True)
        self.nb_msg_passing_steps = check_int("nb_msg_passing_steps", nb_msg_passing_steps, minimum=1)
        self.hint_teacher_forcing = check_float("hint_teacher_forcing", hint_teacher_forcing, minimum=0.0, maximum=1.0)
        self.config = dict(algorithm=algorithm, processor=processor if isinstance(processor, str) else "external",
                           hidden=hidden, num_layers=num_layers, hint_mode=hint_mode,
                           hint_repred_mode=hint_repred_mode, use_ln=use_ln, nb_triplet_fts=nb_triplet_fts,
                           encoder_init=encoder_init, nb_heads=nb_heads, dropout=dropout,
                           nb_msg_passing_steps=nb_msg_passing_steps, hint_teacher_forcing=hint_teacher_forcing)

        spec = SPECS[self.algorithm]
        self.input_layout = FieldLayout.for_stage(self.algorithm, Stage.INPUT)
        self.hint_layout = FieldLayout.for_stage(self.algorithm, Stage.HINT)
        self.output_layout = FieldLayout.for_stage(self.algorithm, Stage.OUTPUT)
        if self.encode_hints and self.hint_layout.graph.count(Type.MASK_ONE):
            raise ValueError(f"{algorithm} has a graph-level mask_one hint, which cannot be fed back")
        if isinstance(processor, nn.Module):
            processor_module = processor
        else:
            layers = [make_processor(processor, self.hidden, nb_triplet_fts=nb_triplet_fts, use_ln=use_ln,
                                     nb_heads=nb_heads, generator=generator) for _ in range(num_layers)]
            processor_module = layers[0] if num_layers == 1 else \
                ProcessorStack(chain(layers), emits_edge_fts=layers[0].emits_edge_fts)
        edge_width = 2 * self.hidden if processor_module.emits_edge_fts else self.hidden
        self.encoders = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        for name, (stage, loc, type_) in spec.items():
            classes = categorical_classes(self.algorithm, name) if type_ == Type.CATEGORICAL else 1
            if stage == Stage.INPUT or (stage == Stage.HINT and self.encode_hints):
                self.encoders[name] = construct_encoder(stage, loc, type_, self.hidden, classes, encoder_init,
                                                        generator)
            if stage == Stage.OUTPUT or (stage == Stage.HINT and self.decode_hints):
                self.decoders[name] = construct_decoder(loc, type_, self.hidden, edge_width, classes, generator)
        self.processor = processor_module

    def haiku_names(self) -> dict[str, str]:
        """``{torch module path: haiku module path}`` for every linear and layer norm (see the module docstring)."""
        if not getattr(self.processor, "haiku_module", ""):
            raise ValueError("only a network with one CLRS-30 processor has haiku names (this one has "
                             f"{type(self.processor).__name__})")
        names = {}
        for prefix, kind, modules in (("encoders", "enc", self.encoders), ("decoders", "dec", self.decoders)):
            for field, linears in modules.items():
                for k in range(len(linears)):
                    names[f"{prefix}.{field}.{k}"] = f"{_HAIKU_NET}{field}_{kind}_linear" + (f"_{k}" if k else "")
        for attr, haiku in self.processor.haiku_names.items():
            names[f"processor.{attr}"] = f"net/{self.processor.haiku_module}/{haiku}"
        return names

    def forward(self, batch: TorchBatch, *, repred: bool,
                generator: torch.Generator | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Output scores ``{name: [B, ...]}`` (logits; values for scalars) and hint scores
        ``{name: [T - 1, B, ...]}`` (step t predicts hint t + 1; empty without decoded hints).

        ``repred``: False at training, True at evaluation (CLRS's flag). ``generator`` draws the
        teacher-forcing choices when ``0 < hint_teacher_forcing < 1``."""
        _require(batch.inputs, self.input_layout.names, "inputs", self.algorithm)
        if self.encode_hints or self.decode_hints:
            _require(batch.hints, self.hint_layout.names, "hints", self.algorithm)
        plan = _Plan(batch)
        b, n, device = plan.num_graphs, plan.num_nodes, plan.device
        dtype = next(iter(batch.inputs.values())).dtype
        node_in, edge_in, graph_in, adj_in = self._encode_inputs(batch, plan)

        encode_hints = self.encode_hints and bool(self.hint_layout)
        decode_hints = self.decode_hints and bool(self.hint_layout)
        hint_weights = EncoderWeights(self.hint_layout, self.encoders) if encode_hints else None
        hint_decoders = DecoderWeights(self.hint_layout, self.decoders) if decode_hints else None
        hard = self.hint_repred_mode == "hard" or (self.hint_repred_mode == "hard_on_eval" and repred)
        forcing = 0.0 if repred else self.hint_teacher_forcing
        inf_bias = bool(getattr(self.processor, "inf_bias", False))
        inf_bias_edge = bool(getattr(self.processor, "inf_bias_edge", False))

        if encode_hints:  # every step encodes hints: their encoders' biases join the inputs' features once
            node_in, edge_in, graph_in = (x if wb is None else x + wb[1] for x, wb in
                                          zip((node_in, edge_in, graph_in),
                                              (hint_weights.node, hint_weights.edge, hint_weights.graph)))
        e_proj = _HintEdgeProjection(hint_decoders, hint_weights, edge_in, self.hidden) if decode_hints else None
        hidden = torch.zeros(b, n, self.hidden, dtype=dtype, device=device)
        fed: Groups | None = None  # post-processed hint predictions of the previous step
        hint_scores: list[dict[str, torch.Tensor]] = []
        finished: list[tuple[torch.Tensor | None, ...]] = []  # (h, edge_fts, tri, graph_fts, adj) at a last step
        for t, k in enumerate(plan.active):
            node_fts, edge_fts, graph_fts, adj = (_prefix(x, k) for x in (node_in, edge_in, graph_in, adj_in))
            edge_x = None
            if encode_hints:
                values = self._hints_at(batch, plan, t, k, fed, forcing, generator)
                node_x, edge_x, graph_x = channels(values)
                if node_x is not None:
                    node_fts = add_linear(node_fts, node_x, hint_weights.node[0])
                if edge_x is not None:
                    edge_fts = add_linear(edge_fts, edge_x, hint_weights.edge[0])
                if graph_x is not None:
                    graph_fts = add_linear(graph_fts, graph_x, hint_weights.graph[0])
                found = adjacency(self.hint_layout, values)
                adj = adj | found if found is not None else adj
            adj = adj.to(dtype)
            prev_hidden = _prefix(hidden, k)
            nxt, tri = prev_hidden, None
            for _ in range(self.nb_msg_passing_steps):
                nxt, tri = self.processor(node_fts, edge_fts, graph_fts, adj, nxt)
            if self.dropout and not repred:
                nxt = F.dropout(nxt, self.dropout, training=True)
            h = torch.cat([node_fts, prev_hidden, nxt], dim=-1)
            if decode_hints:
                scores = decode(hint_decoders, h, None, graph_fts, adj, inf_bias, inf_bias_edge,
                                e_proj=e_proj(k, edge_x, tri))
                hint_scores.append(scores.fields(self.hint_layout))
                if encode_hints and t + 1 < len(plan.active) and forcing < 1.0:
                    fed = postprocess(self.hint_layout, scores, hard)
            k_next = plan.active[t + 1] if t + 1 < len(plan.active) else 0
            if k_next < k:
                finished.append(tuple(None if x is None else x[k_next:k] for x in (h, edge_fts, tri, graph_fts, adj)))
            hidden = nxt

        h, edge_fts, tri, graph_fts, adj = (
            None if parts[0] is None else torch.cat(parts[::-1]) if len(parts) > 1 else parts[0]
            for parts in zip(*finished))  # traces in the plan's order
        e = edge_fts if tri is None else torch.cat([edge_fts, tri], dim=-1)
        outputs = decode(DecoderWeights(self.output_layout, self.decoders), h, e, graph_fts, adj, inf_bias,
                         inf_bias_edge)
        output_preds = {name: plan.unsort(x) for name, x in outputs.fields(self.output_layout).items()}
        return output_preds, self._hint_preds(plan, hint_scores) if decode_hints else {}

    def _hint_preds(self, plan: _Plan, hint_scores: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {name: plan.unsort_steps([scores[name] for scores in hint_scores[:plan.num_steps - 1]],
                                        hint_scores[0][name]) for name in self.hint_layout.names}

    def _encode_inputs(self, batch: TorchBatch, plan: _Plan) -> tuple[torch.Tensor, ...]:
        """Node, edge and graph features of the inputs (zeros where none lands) and the adjacency they
        give (the identity, plus input node pointers and edge masks), in the plan's order."""
        b, n = plan.num_graphs, plan.num_nodes
        inputs = group(self.input_layout, {name: plan.sort(batch.inputs[name]) for name in self.input_layout.names}, n)
        features = encode(EncoderWeights(self.input_layout, self.encoders), inputs)
        like = next(iter(batch.inputs.values()))
        features = [x if x is not None else like.new_zeros(shape) for x, shape in
                    zip(features, ((b, n, self.hidden), (b, n, n, self.hidden), (b, self.hidden)))]
        adj = torch.eye(n, dtype=torch.bool, device=plan.device).expand(b, n, n)
        found = adjacency(self.input_layout, inputs)
        return (*features, adj | found if found is not None else adj)

    def _hints_at(self, batch: TorchBatch, plan: _Plan, t: int, k: int, fed: Groups | None, forcing: float,
                  generator: torch.Generator | None) -> Groups:
        """Encoder-ready hints of step t for the first ``k`` (sorted) traces."""
        def truth() -> Groups:
            return group(self.hint_layout, {name: plan.sort(batch.hints[name][t])[:k]
                                            for name in self.hint_layout.names}, plan.num_nodes)

        if fed is None or forcing == 1.0 or not self.decode_hints:
            return truth()
        fed = fed.map(lambda x: x[:k])
        if forcing == 0.0:
            return fed
        draw = torch.rand(plan.num_graphs, generator=generator,
                          device=generator.device if generator is not None else "cpu") < forcing
        force = plan.sort(draw.to(plan.device))[:k]
        return truth().zip_map(fed, lambda gt, pred: torch.where(force.view(-1, *[1] * (gt.dim() - 1)), gt, pred))

    def loss(self, batch: TorchBatch, generator: torch.Generator | None = None) -> torch.Tensor:
        """CLRS's training loss (``BaselineModel._loss``): the output losses plus, with decoded hints,
        the hint losses, in spec order (``generator``: see :meth:`forward`)."""
        output_preds, hint_preds = self(batch, repred=False, generator=generator)
        return clrs_loss(self.algorithm, batch, output_preds, hint_preds)

    @torch.no_grad()
    def predict(self, batch: TorchBatch) -> dict[str, torch.Tensor]:
        """Hard output predictions (CLRS's ``_predict``) in the format ``gnnbench.algo.Evaluator`` scores:
        pointers as node indices (int64), masks 0/1, mask_one and categorical one-hot, scalars as values."""
        output_preds, _ = self(batch, repred=True)
        return hard_predictions(self.output_layout.types, output_preds)

    @torch.no_grad()
    def predict_hints(self, batch: TorchBatch) -> dict[str, torch.Tensor]:
        """Hard hint predictions ``{name: [B, T, ...]}`` for ``Evaluator.eval_hints`` (step t >= 1
        predicted from step t - 1; step 0, never scored, is the ground truth)."""
        _, hint_preds = self(batch, repred=True)
        out = {}
        for name, hard in hard_predictions(self.hint_layout.types, hint_preds).items():
            first = batch.hints[name][:1].to(hard.dtype)
            out[name] = torch.cat([first, hard]).transpose(0, 1)
        return out


def clrs_loss(algorithm: str, batch: TorchBatch, output_preds: dict[str, torch.Tensor],
              hint_preds: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of the output losses and of the hint losses of the decoded hints (``hint_preds`` may be
    empty), as CLRS's ``BaselineModel._loss``; hint steps after the longest trace are left out."""
    spec = SPECS[check_algorithm(algorithm)]
    _require(batch.outputs, tuple(n for n, (st, _, _) in spec.items() if st == Stage.OUTPUT), "outputs", algorithm)
    total = None
    for name, (stage, _, type_) in spec.items():
        if stage == Stage.OUTPUT:
            term = output_loss(type_, output_preds[name], batch.outputs[name])
            total = term if total is None else total + term
    if hint_preds:
        longest = max(1, int(batch.lengths.max().item()))
        for name, (stage, _, type_) in spec.items():
            if stage == Stage.HINT:
                total = total + hint_loss(type_, hint_preds[name][:longest - 1], batch.hints[name][:longest],
                                          batch.lengths)
    return total


def _require(values: dict[str, torch.Tensor], names: tuple[str, ...], part: str, algorithm: str) -> None:
    missing = [name for name in names if name not in values]
    if missing:
        raise ValueError(f"the batch's {part} lack {', '.join(missing)} (fields of {algorithm}); "
                         f"it has {', '.join(values) or 'none'}")


def _prefix(x: torch.Tensor, k: int) -> torch.Tensor:
    """The first ``k`` traces of ``x`` (``x`` itself when that is all of them: no slice to undo in backward)."""
    return x if x.shape[0] == k else x[:k]


class _HintEdgeProjection:
    """The hint decoders' linears that read the edge features ``e = [edge_fts, tri]``, without forming ``e``.

    ``edge_fts = edge_in + W x`` (``x`` the hint edge channels, ``W`` their encoders' weights; ``edge_in``
    includes their biases), so a linear ``L`` of it is ``L_a(edge_in) + (L_a W) x + L_b(tri)``:
    ``L_a(edge_in)`` is computed once per forward pass, ``(L_a W)`` has a few input channels, and only
    ``L_b(tri)`` is a full product per step (none without triplet edge features). The same values as
    ``L(e)`` up to float rounding."""

    def __init__(self, decoders: DecoderWeights, encoders: EncoderWeights | None, edge_in: torch.Tensor,
                 hidden: int) -> None:
        self.active = "e" in decoders.weights
        if not self.active:
            return
        weight, bias = decoders.weights["e"]
        # column slices made contiguous: oneDNN's product is very slow on a strided weight
        self.w_tri = weight[:, hidden:].contiguous() if weight.shape[1] > hidden else None
        w_fts = weight[:, :hidden].contiguous() if weight.shape[1] > hidden else weight
        self.from_inputs = linear(edge_in, w_fts, bias)
        self.from_hints = None
        if encoders is not None and encoders.edge is not None:
            self.from_hints = w_fts @ encoders.edge[0]

    def __call__(self, k: int, edge_x: torch.Tensor | None, tri: torch.Tensor | None) -> torch.Tensor | None:
        if not self.active:
            return None
        out = _prefix(self.from_inputs, k)
        if edge_x is not None and self.from_hints is not None:
            out = add_linear(out, edge_x, self.from_hints)
        if tri is not None and self.w_tri is not None:
            out = out + linear(tri, self.w_tri)
        return out


class _Plan:
    """Which traces run at which step: traces sorted by their last step ``max(length - 2, 0)``
    (longest first, stable), ``active[t]`` = how many run step t."""

    def __init__(self, batch: TorchBatch) -> None:
        lengths = batch.lengths
        if lengths.dim() != 1 or lengths.numel() == 0:
            raise ValueError(f"lengths must be a non-empty [num_graphs] tensor, got shape {tuple(lengths.shape)}")
        self.num_graphs, self.num_nodes, self.num_steps = batch.num_graphs, batch.num_nodes, batch.num_steps
        self.device = lengths.device
        steps = lengths.detach().to("cpu", torch.float64)
        if not torch.equal(steps, steps.round()) or (steps < 1).any() or (steps > self.num_steps).any():
            raise ValueError(f"lengths must be whole numbers in 1..{self.num_steps} (the hints' steps), "
                             f"got {steps.tolist()}")
        last = (steps.long() - 2).clamp(min=0)
        order = torch.argsort(last, descending=True, stable=True)
        last_sorted = last[order].tolist()
        self.active = [sum(1 for x in last_sorted if x >= t) for t in range(last_sorted[0] + 1)]
        self.identity = order.tolist() == list(range(self.num_graphs))
        self.order = order.to(self.device)

    def sort(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, ...]`` in the plan's order."""
        return x if self.identity else x.index_select(0, self.order)

    def unsort(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, ...]`` from the plan's order back to the batch's."""
        return x if self.identity else torch.zeros_like(x).index_copy(0, self.order, x)

    def unsort_steps(self, steps: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """Per-step predictions of the running traces (``[active[t], ...]``) as ``[T - 1, B, ...]`` in the
        batch's order, zero where a trace no longer runs (``like``: a step's predictions)."""
        b, total, shape = self.num_graphs, self.num_steps - 1, like.shape[1:]
        if not steps:
            return like.new_zeros((total, b, *shape))
        flat = torch.cat(steps) if len(steps) > 1 else steps[0]
        if len(steps) == total and all(x.shape[0] == b for x in steps) and self.identity:
            return flat.reshape(total, b, *shape)
        index = torch.cat([t * b + self.order[:x.shape[0]] for t, x in enumerate(steps)])
        out = flat.new_zeros((total * b, *shape))
        return out.index_copy(0, index, flat).view(total, b, *shape)
