"""BERT: counts, padding, masked-LM head and losses, input checks, weight transfer, Hugging Face parity."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo.checks import checked
from zoo.data.masking import max_predictions
from zoo.interop import params_from_hf_bert
from zoo.train.objectives import MASKED_LM, SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION
from zoo.models.bert import (
    BERT,
    BERTConfig,
    BERTForMaskedLM,
    BERTForPreTraining,
    BERTForSequenceClassification,
    BERTForTokenClassification,
    bert_flops_per_token,
    bert_param_count,
    transfer_encoder,
)

TINY = BERTConfig(
    vocab_size=50, max_positions=16, num_layers=2, num_heads=2, features=32, block_size=12, num_labels=3,
    dropout_rate=0.0, attention_dropout_rate=0.0,
)
MODELS = {
    "none": BERT,
    "mlm": BERTForMaskedLM,
    "pretraining": BERTForPreTraining,
    "sequence_classification": BERTForSequenceClassification,
    "token_classification": BERTForTokenClassification,
}

def init(model, ids, seed=0, **kwargs):
    """``model.init(...)["params"]`` under jit: one compile instead of an eager run of every initialiser."""
    return jax.jit(model.init)(jax.random.key(seed), jnp.asarray(ids), **kwargs)["params"]

def random_ids(b, t, seed=0):
    return np.random.default_rng(seed).integers(1, TINY.vocab_size, (b, t)).astype(np.int32)

@pytest.mark.parametrize("heads", list(MODELS))
@pytest.mark.parametrize("changes", [{}, {"use_bias": False, "scan_layers": False, "mlp_dim": 24}])
def test_param_count_matches_init(heads, changes):
    cfg = TINY.replace(**changes)
    shapes = jax.eval_shape(lambda: MODELS[heads](cfg).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32)))
    n = sum(x.size for x in jax.tree.leaves(nn.unbox(shapes["params"])))
    assert bert_param_count(cfg, heads=heads) == n

def test_flop_count_hand_worked():
    # 1 layer, D=4, 2 heads of 2, F=16, V=10, T=8: layer 4*12+12 + 4*4+4 + 4*16+16 + 16*4+4 + 2*8 = 244,
    # + embedding LayerNorm 8 -> encoder 252; MLM head: transform 16+4, norm 8, bias 10, decoder 40 -> 78
    cfg = BERTConfig(vocab_size=10, max_positions=8, num_layers=1, num_heads=2, features=4, block_size=8)
    attention = 12 * 1 * 2 * 2 * 8
    assert bert_flops_per_token(cfg) == 6 * (252 + 78) + attention
    assert bert_flops_per_token(cfg, mlm_fraction=0.25) == 6 * (252 + 78 / 4) + attention
    assert bert_flops_per_token(cfg, seq_len=2) == 6 * (252 + 78) + attention / 4
    assert max_predictions(128) == 20 and max_predictions(100, 0.07) == 7 and max_predictions(3) == 1

def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="BERTConfig: block_size=32, expected at most max_positions=16"):
        TINY.replace(block_size=32)
    with pytest.raises(ValueError, match="features=30, expected a multiple of num_heads=4"):
        TINY.replace(features=30, num_heads=4)
    with pytest.raises(ValueError, match="dtype='float64'"):
        TINY.replace(dtype="float64")
    with pytest.raises(ValueError, match="pad_id=50"):
        TINY.replace(pad_id=50)

def test_padding_does_not_change_real_positions(helpers):
    model = BERTForTokenClassification(TINY)
    variables = {"params": init(model, random_ids(1, 4))}
    ids = random_ids(2, 6)
    lengths = np.array([4, 6], np.int32)
    segments = np.array([[0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]], np.int32)
    out = helpers.apply(model, variables, ids, segment_ids=segments, seq_lengths=lengths)  # (2, 6, 3)
    ids2 = ids.copy()
    ids2[0, 4:] = [7, 9]  # other padding tokens in row 0
    ids2 = np.concatenate([ids2, random_ids(2, 3, seed=1)], axis=1)  # and 3 more padding positions
    segments2 = np.concatenate([segments, np.ones((2, 3), np.int32)], axis=1)
    out2 = helpers.apply(model, variables, ids2, segment_ids=segments2, seq_lengths=lengths)  # (2, 9, 3)
    np.testing.assert_allclose(out2[0, :4], out[0, :4], atol=1e-6)
    np.testing.assert_allclose(out2[1, :6], out[1, :6], atol=1e-6)
    # the padding is really ignored: without lengths the outputs differ
    unmasked = helpers.apply(model, variables, ids2, segment_ids=segments2)
    assert np.abs(unmasked[0, :4] - out[0, :4]).max() > 1e-4

def test_masked_positions_equal_gathered_full_logits(helpers):
    model = BERTForPreTraining(TINY)
    ids = random_ids(2, 8)
    lengths = np.array([8, 6], np.int32)
    positions = np.array([[1, 5, 0], [7, 2, 2]], np.int32)
    variables = {"params": init(model, ids, masked_positions=positions)}
    full, nsp = helpers.apply(model, variables, ids, seq_lengths=lengths)
    picked, nsp2 = helpers.apply(model, variables, ids, seq_lengths=lengths, masked_positions=positions)
    assert full.shape == (2, 8, 50) and picked.shape == (2, 3, 50) and nsp.shape == (2, 2)
    assert picked.dtype == nsp.dtype == jnp.float32
    want = np.take_along_axis(np.asarray(full), positions[:, :, None], axis=1)
    np.testing.assert_allclose(picked, want, atol=1e-5)
    np.testing.assert_allclose(nsp, nsp2, atol=1e-6)

def test_bfloat16_computes_and_returns_float32_logits(helpers):
    model = BERTForMaskedLM(TINY.replace(dtype="bfloat16"))
    ids = random_ids(2, 8)
    params = init(model, ids)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nn.unbox(params)))
    logits = helpers.apply(model, {"params": params}, ids, masked_positions=np.array([[1, 2], [3, 4]]))
    assert logits.dtype == jnp.float32 and np.isfinite(logits).all()

def mlm_batch(b=2, t=8, p=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = random_ids(b, t, seed)
    positions = np.stack([np.sort(rng.choice(np.arange(1, t), p, replace=False)) for _ in range(b)])
    positions = positions.astype(np.int32)  # (B, P)
    ids = labels.copy()
    np.put_along_axis(ids, positions, 3, axis=1)  # 3 plays [MASK]
    weights = np.ones((b, p), np.float32)
    weights[1, -1] = 0.0  # one padding prediction
    return {
        "ids": ids, "segment_ids": np.zeros((b, t), np.int32), "seq_lengths": np.full((b,), t, np.int32),
        "mlm_positions": positions, "mlm_labels": np.take_along_axis(labels, positions, axis=1),
        "mlm_weights": weights,
    }

def test_masked_lm_loss_counts_only_weighted_masked_positions(helpers):
    model = BERTForMaskedLM(TINY)
    batch = mlm_batch()
    params = init(model, batch["ids"], masked_positions=batch["mlm_positions"])
    loss_fn = jax.jit(lambda batch: MASKED_LM.loss(model, params, batch, dropout_key=None))
    loss, metrics = loss_fn(batch)
    # the reference: the full (B, T, V) logits, cross-entropy at the masked positions of weight 1 only
    logp = np.asarray(jax.nn.log_softmax(helpers.apply(model, {"params": params}, batch["ids"])))
    logp = np.take_along_axis(logp, batch["mlm_positions"][:, :, None], axis=1)  # (B, P, V)
    nll = -np.take_along_axis(logp, batch["mlm_labels"][:, :, None], axis=2)[..., 0]  # (B, P)
    np.testing.assert_allclose(loss, (nll * batch["mlm_weights"]).sum() / 5, rtol=1e-5)
    correct = (logp.argmax(-1) == batch["mlm_labels"]) * batch["mlm_weights"]
    np.testing.assert_allclose(metrics["accuracy"], correct.sum() / 5, rtol=1e-6)
    labels = batch["mlm_labels"].copy()
    labels[1, -1] = -100  # the weight-0 prediction: any label, even out of range, changes nothing
    np.testing.assert_allclose(loss_fn(dict(batch, mlm_labels=labels))[0], loss, rtol=1e-6)
    labels[0, 0] = (labels[0, 0] + 1) % TINY.vocab_size  # a real one does
    assert abs(loss_fn(dict(batch, mlm_labels=labels))[0] - loss) > 1e-4

def test_tiny_masked_lm_overfits_a_fixed_batch():
    model = BERTForMaskedLM(TINY)
    batch = {k: jnp.asarray(v) for k, v in mlm_batch(b=4, t=8, p=3, seed=1).items()}
    params = nn.unbox(init(model, batch["ids"], seed=1, masked_positions=batch["mlm_positions"]))
    opt = optax.adam(1e-2)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        (loss, metrics), grads = jax.value_and_grad(MASKED_LM.loss, argnums=1, has_aux=True)(
            model, params, batch, dropout_key=None
        )
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state, loss, metrics

    for _ in range(40):
        params, state, loss, metrics = step(params, state)
    assert loss < 0.05 and metrics["accuracy"] == 1.0

@pytest.mark.parametrize(
    "objective", [MASKED_LM, SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION], ids=lambda o: o.name
)
def test_objectives_init_and_train_with_dropout(objective):
    cfg = TINY.replace(dropout_rate=0.1, attention_dropout_rate=0.1)
    model = {
        "masked_lm": BERTForMaskedLM,
        "sequence_classification": BERTForSequenceClassification,
        "token_classification": BERTForTokenClassification,
    }[objective.name](cfg)
    example = objective.example_batch(cfg)
    assert example["ids"].shape == (1, cfg.block_size) and objective.tokens_key == "ids"
    if objective is MASKED_LM:
        assert example["mlm_positions"].shape == (1, max_predictions(cfg.block_size))
    params = jax.jit(lambda key: objective.init_params(model, cfg, key))(jax.random.key(0))
    batch = {k: np.repeat(v, 2, axis=0) for k, v in example.items()}
    batch["ids"] = random_ids(2, cfg.block_size)
    for k in ("mlm_weights", "label_weights"):
        if k in batch:
            batch[k][:] = 1.0
    train = jax.jit(jax.value_and_grad(
        lambda p, key: objective.loss(model, p, batch, dropout_key=key), has_aux=True
    ))
    (loss, metrics), grads = train(params, jax.random.key(1))
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads)) and metrics.keys() == {"accuracy"}
    assert loss != train(params, jax.random.key(2))[0][0]  # dropout is on
    evaluate = jax.jit(lambda p: objective.loss(model, p, batch, dropout_key=None))
    assert np.isfinite(evaluate(params)[0])

def test_bad_inputs_raise():
    model = BERTForMaskedLM(TINY)
    ids = random_ids(1, 4)
    params = init(model, ids)

    def apply(x, **kwargs):
        return model.apply({"params": params}, x, **kwargs)

    with pytest.raises(ValueError, match="token ids must be valid indices into a table of size 50.*got 50"):
        apply(np.array([[1, 50]]))
    with pytest.raises(ValueError, match="sequence length 17 .* max_positions=16"):
        apply(np.zeros((1, 17), np.int32))
    with pytest.raises(ValueError, match="segment_ids must be token types of a table of size 2.*got 2"):
        apply(ids, segment_ids=np.array([[0, 1, 2, 0]]))
    with pytest.raises(ValueError, match="segment_ids has shape \\(1, 3\\), expected \\(1, 4\\)"):
        apply(ids, segment_ids=np.zeros((1, 3), np.int32))
    with pytest.raises(ValueError, match="seq_lengths must be lengths of rows of 4 tokens.*got 5"):
        apply(ids, seq_lengths=np.array([5]))
    with pytest.raises(ValueError, match="masked_positions must be positions in rows of 4 tokens.*got 4"):
        apply(ids, masked_positions=np.array([[4]]))
    with pytest.raises(Exception, match="segment_ids must be token types"):  # under jit: zoo.checked
        checked(jax.jit(model.apply))({"params": params}, ids, segment_ids=jnp.array([[0, 1, 2, 0]]))

def test_classifier_takes_the_pretrained_encoder(helpers):
    ids = random_ids(2, 6)
    mlm = init(BERTForMaskedLM(TINY), ids, seed=0)
    classifier = BERTForSequenceClassification(TINY)
    fresh = init(classifier, ids, seed=1)
    with pytest.warns(UserWarning, match="no 'pooler'"):
        moved = transfer_encoder(mlm, fresh)
    assert moved.keys() == fresh.keys() and "mlm_head" not in moved
    assert moved["classifier"] is fresh["classifier"]
    assert nn.get_partition_spec(moved) == nn.get_partition_spec(fresh)  # the logical axis names stay
    encoder = helpers.apply(BERT(TINY), {"params": mlm["bert"]}, ids)
    np.testing.assert_array_equal(helpers.apply(BERT(TINY), {"params": moved["bert"]}, ids), encoder)
    logits = helpers.apply(classifier, {"params": moved}, ids, segment_ids=np.array([[0, 0, 0, 1, 1, 1]] * 2))
    assert logits.shape == (2, 3) and logits.dtype == jnp.float32

    pretraining = init(BERTForPreTraining(TINY), ids, seed=2)
    moved = transfer_encoder(pretraining, fresh)  # the pooler too, and no warning
    pooler = nn.unbox(pretraining["pooler"])
    jax.tree.map(np.testing.assert_array_equal, nn.unbox(moved["pooler"]), pooler)
    with pytest.raises(ValueError, match="'bert' differs between the models"):
        transfer_encoder(init(BERTForMaskedLM(TINY.replace(num_layers=3)), ids), fresh)
    with pytest.raises(ValueError, match="has no 'bert' entry.*not the variables"):
        transfer_encoder({"params": mlm}, fresh)

# -- Hugging Face reference --------------------------------------------------------------

def hf_model(cls_name, cfg):
    """A randomly initialised transformers model with ``cfg``'s shapes (skips without torch/transformers)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.features, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.mlp_dim or 4 * cfg.features,
        max_position_embeddings=cfg.max_positions, type_vocab_size=cfg.type_vocab_size, hidden_act="gelu",
        layer_norm_eps=1e-12, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        num_labels=cfg.num_labels, attn_implementation="eager",
    )
    torch.manual_seed(0)
    hf = getattr(transformers, cls_name)(hf_config).eval()
    with torch.no_grad():  # HF starts biases at 0 and LayerNorms at 1: perturb them to test their mapping
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return torch, hf

def hf_inputs(torch, ids, lengths, segments=None):
    mask = np.arange(ids.shape[1])[None] < lengths[:, None]  # (B, T)
    inputs = {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "attention_mask": torch.tensor(mask.astype(int)),
    }
    if segments is not None:
        inputs["token_type_ids"] = torch.tensor(segments, dtype=torch.long)
    return inputs, mask

@pytest.mark.parametrize("scan_layers", [True, False])
def test_matches_hugging_face_bert(scan_layers, helpers):
    cfg = TINY.replace(scan_layers=scan_layers)
    torch, hf = hf_model("BertForPreTraining", cfg)
    params = params_from_hf_bert(hf.state_dict(), cfg)
    ids = random_ids(2, 10)
    segments = np.array([[0] * 5 + [1] * 5, [0] * 3 + [1] * 7], np.int32)
    lengths = np.array([10, 7], np.int32)
    inputs, real = hf_inputs(torch, ids, lengths, segments)  # compare real positions: zoo's padding is junk
    with torch.no_grad():
        out = hf(**inputs, output_hidden_states=True)
    kwargs = {"segment_ids": segments, "seq_lengths": lengths}
    sequence = helpers.apply(BERT(cfg), {"params": params["bert"]}, ids, **kwargs)
    np.testing.assert_allclose(np.asarray(sequence)[real], out.hidden_states[-1].numpy()[real], atol=1e-4)
    mlm, nsp = helpers.apply(BERTForPreTraining(cfg), {"params": params}, ids, **kwargs)
    np.testing.assert_allclose(np.asarray(mlm)[real], out.prediction_logits.numpy()[real], atol=1e-4)
    np.testing.assert_allclose(nsp, out.seq_relationship_logits.numpy(), atol=1e-4)

def test_matches_hugging_face_masked_lm_and_classifier(helpers):
    ids = random_ids(2, 9, seed=3)
    lengths = np.array([9, 4], np.int32)
    torch, hf = hf_model("BertForMaskedLM", TINY)
    params = params_from_hf_bert(hf.state_dict(), TINY)
    assert "pooler" not in params
    inputs, _ = hf_inputs(torch, ids, lengths)
    with torch.no_grad():
        want = hf(**inputs).logits.numpy()  # (B, T, V)
    positions = np.array([[0, 4, 8], [1, 2, 3]], np.int32)
    got = helpers.apply(
        BERTForMaskedLM(TINY), {"params": params}, ids, seq_lengths=lengths, masked_positions=positions
    )
    np.testing.assert_allclose(got, np.take_along_axis(want, positions[:, :, None], axis=1), atol=1e-4)

    torch, hf = hf_model("BertForSequenceClassification", TINY)
    params = params_from_hf_bert(hf.state_dict(), TINY)
    with torch.no_grad():
        want = hf(**inputs).logits.numpy()  # (B, num_labels)
    got = helpers.apply(BERTForSequenceClassification(TINY), {"params": params}, ids, seq_lengths=lengths)
    np.testing.assert_allclose(got, want, atol=1e-4)
    with pytest.raises(ValueError, match="tensors that the BERT's table does not read"):
        params_from_hf_bert({**hf.state_dict(), "bert.extra.weight": np.zeros(2)}, TINY)
    with pytest.raises(ValueError, match=r"word_embeddings.weight has shape \(50, 32\), but the config implies \(51, 32\)"):
        params_from_hf_bert(hf.state_dict(), TINY.replace(vocab_size=51))
