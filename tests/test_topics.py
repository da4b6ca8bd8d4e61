"""The topic catalogue, lookup by any name, suggestions, custom topics and `digestbot topics`."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest

from digestbot import topics
from digestbot.cli import main
from digestbot.enrich.offline import score_offline
from digestbot.errors import UsageError
from digestbot.store import Store
from digestbot.topics import (
    active_topics,
    custom_topic,
    get_topic,
    load_catalogue,
    lookup,
    normalize,
    suggest,
)

# Archives a topic may draw from; a typo such as "cs.cl" or "cs.LGG" must fail the test.
KNOWN_CATEGORIES = {
    "cs.AI", "cs.AR", "cs.CL", "cs.CV", "cs.DC", "cs.GR", "cs.LG", "cs.MM", "cs.PF", "cs.RO",
    "cs.SD", "eess.AS", "stat.ML",
}


def _cjk(text: str) -> bool:
    return bool(re.search(r"[\u4e00-\u9fff]", text))


def test_catalogue_is_shipped_inside_the_package() -> None:
    assert resources.files("digestbot").joinpath("topics.toml").is_file()


def test_catalogue_has_30_topics_with_every_field() -> None:
    catalogue = load_catalogue()
    assert len(catalogue.topics) >= 30
    tree_slugs = [t.slug for a in catalogue.areas for g in a.groups for t in g.topics]
    assert sorted(tree_slugs) == sorted(catalogue.topics)
    for topic in catalogue.topics.values():
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", topic.slug), topic.slug
        assert _cjk(topic.name_zh) and topic.name_en.isascii(), topic.slug
        assert any(_cjk(a) for a in topic.aliases), f"{topic.slug}: no Chinese alias"
        assert any(a.isascii() for a in topic.aliases), f"{topic.slug}: no English alias"
        assert len(topic.description) >= 60 and "不包括" in topic.description, topic.slug
        assert topic.categories and set(topic.categories) <= KNOWN_CATEGORIES, topic.slug
        assert topic.terms_en and topic.terms_zh, topic.slug
        assert all(not _cjk(t) for t in topic.terms_en)
        assert all(_cjk(t) for t in topic.terms_zh)
        assert set(topic.term_weights.values()) <= {3, 2, 1, -3}
        assert any(w == 3 for w in topic.term_weights.values()), f"{topic.slug}: no core term"
        assert topic.area and topic.group and not topic.custom


def test_seed_group_and_broad_post_training() -> None:
    catalogue = load_catalogue()
    area = next(a for a in catalogue.areas if a.name_zh == "AI 大模型")
    group = next(g for g in area.groups if g.name_zh == "语言大模型 / LLM")
    assert group.description == "大语言模型、预训练、指令微调、后训练和语言模型应用"
    assert list(group.categories) == ["cs.CL", "cs.AI", "cs.LG"]
    post = catalogue.topics["post-training"]
    assert post.group == "语言大模型 / LLM"
    for needle in ("SFT", "RLHF", "RLAIF", "RLVR", "GRPO", "DAPO", "DPO", "奖励模型", "rubric",
                   "蒸馏", "测试时扩展", "合并", "遗忘", "rollout"):
        assert needle in post.description, needle
    required = {"GRPO", "DPO", "SFT", "RLHF", "RLVR", "reward model", "on-policy distillation"}
    assert required <= set(post.terms_en)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("post-training", "post-training"),
        ("后训练", "post-training"),
        ("Post-Training", "post-training"),
        ("post training", "post-training"),
        ("ＧＲＰＯ", "post-training"),
        (" 后 训练 ", "post-training"),
        ("Post\u3000\tTraining", "post-training"),
        ("rlhf", "post-training"),
        ("ＲＡＧ", "rag"),
        ("检索增强生成", "rag"),
        ("扩散模型", "diffusion-models"),
        ("Diffusion Models", "diffusion-models"),
        ("model merging", "model-merging"),
        ("机器遗忘", "machine-unlearning"),
        ("ASR", "speech-recognition"),
        ("具身智能", "embodied-ai"),
    ],
)
def test_lookup_by_slug_name_or_alias(name: str, slug: str) -> None:
    topic = lookup(name)
    assert topic is not None and topic.slug == slug


def test_normalize_is_case_width_and_whitespace_insensitive() -> None:
    assert normalize("ＧＲＰＯ") == normalize("grpo") == "grpo"
    assert normalize(" 后 训练 ") == normalize("后训练") == "后训练"
    assert normalize("Post\u3000Training\n") == "posttraining"


def test_unknown_name_gets_suggestions() -> None:
    assert lookup("后训") is None
    assert suggest("后训")[0].slug == "post-training"
    assert suggest("训练后")[0].slug == "post-training"
    assert suggest("diffusion modle")[0].slug == "diffusion-models"
    assert "efficient-inference" in [t.slug for t in suggest("speculative decoding tricks")]
    assert len(suggest("后训", n=2)) <= 2
    assert suggest("xyzzy plugh") == []
    # A short acronym that is one of a topic's terms, not a name: those topics, not chance.
    assert {t.slug for t in suggest("ＭｏＥ")[:2]} == {"pretraining", "efficient-inference"}
    assert suggest("WER")[0].slug == "speech-recognition"
    message = topics.unknown_topic_message("后训")
    assert "未知主题" in message and "unknown topic" in message and "post-training" in message


def test_custom_topic_shared_by_identical_texts_and_persisted(settings) -> None:
    with Store(settings.db) as store:
        first = custom_topic(store, "扩散模型视频编辑")
        again = custom_topic(store, " 扩散模型 视频编辑 ")
        other = custom_topic(store, "Speculative decoding for RL rollouts")
        same = custom_topic(store, "speculative  decoding for rl ROLLOUTS")
        assert first.slug == again.slug and first.slug.startswith("custom-")
        assert other.slug == same.slug != first.slug
        assert first.custom and first.description == "扩散模型视频编辑"
        assert store.db["custom_topics"].count == 2
    with Store(settings.db) as store:
        assert get_topic(first.slug, store).description == "扩散模型视频编辑"
        assert lookup(first.slug, store).slug == first.slug
        assert lookup("ＳＰＥＣＵＬＡＴＩＶＥ decoding for RL rollouts", store).slug == other.slug
        assert lookup("扩散模型视频编辑") is None  # custom topics live in a store
        with pytest.raises(KeyError):
            get_topic("custom-0000000000", store)
    with pytest.raises(KeyError):
        get_topic("no-such-topic")


@pytest.mark.parametrize("text", ["", "   \n ", "长" * 201])
def test_custom_topic_rejects_empty_or_long_text(store: Store, text: str) -> None:
    with pytest.raises(UsageError) as err:
        custom_topic(store, text)
    assert _cjk(str(err.value)) and re.search(r"[a-z]{4}", str(err.value))
    assert store.db["custom_topics"].count == 0


def test_custom_topic_terms_come_from_its_words() -> None:
    terms_en, _, weights = topics.custom_terms("speculative decoding for RL rollouts")
    assert {"speculative decoding", "RL rollouts", "speculative", "rollouts"} <= set(terms_en)
    assert "for" not in terms_en and weights["speculative decoding"] > weights["speculative"]
    # Chinese text borrows the English terms of the catalogue topics it names.
    terms_en, terms_zh, _ = topics.custom_terms("扩散模型视频编辑")
    assert {"diffusion model", "video editing"} <= set(terms_en)
    assert "视频" in terms_zh


def test_custom_topic_scores_offline(store: Store) -> None:
    topic = custom_topic(store, "扩散模型视频编辑")
    on, _ = score_offline(
        "Zero-Shot Video Editing with Pretrained Diffusion Models",
        "We edit real videos with a text-to-image diffusion model and keep temporal "
        "consistency across frames without per-video training.",
        topic,
    )
    off, _ = score_offline("Parsing Legal Contracts", "We parse contracts with a CRF.", topic)
    assert on >= 70 and off < 40
    english = custom_topic(store, "speculative decoding for RL rollouts")
    score, reason = score_offline(
        "Speculative Decoding Accelerates RL Rollouts",
        "Rollouts dominate RL post-training time; we apply speculative decoding to them.",
        english,
    )
    assert score >= 70 and "speculative decoding" in reason


def _subscribe(store: Store, status: str, *slugs: str) -> None:
    sid = store.db["subscribers"].insert(
        {"channel": "email", "address": f"{status}@example.org", "status": status,
         "token": f"tok-{status}", "lang": "zh"}
    ).last_pk
    for slug in slugs:
        store.db["subscriptions"].insert({"subscriber_id": sid, "topic": slug, "threshold": 60})


def test_active_topics_follow_active_and_paused_subscribers(store: Store) -> None:
    custom = custom_topic(store, "protein folding with diffusion")
    _subscribe(store, "active", "post-training", custom.slug)
    _subscribe(store, "paused", "rag", "post-training")
    _subscribe(store, "unsubscribed", "agents")
    _subscribe(store, "blocked", "reasoning")
    _subscribe(store, "pending", "pretraining")
    slugs = [t.slug for t in active_topics(store)]
    assert sorted(slugs) == sorted(["post-training", "rag", custom.slug])
    extra = [t.slug for t in active_topics(store, extra=["扩散模型", "rag"])]
    assert extra[-1] == "diffusion-models" and extra.count("rag") == 1
    with pytest.raises(UsageError, match="post-training"):
        active_topics(store, extra=["后训"])


def test_subscription_to_vanished_topic_is_skipped(store: Store) -> None:
    _subscribe(store, "active", "removed-topic", "agents")
    assert [t.slug for t in active_topics(store)] == ["agents"]


def test_broken_catalogue_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    good = topics._read_catalogue_file()
    group = good["areas"][0]["groups"][0]

    def with_topic(**changes):
        bad = json.loads(json.dumps(good))
        bad["areas"][0]["groups"][0]["topics"].append({**group["topics"][0], **changes})
        return bad

    cases = [
        (with_topic(slug="Bad Slug"), "slug"),
        (with_topic(), "duplicate slug"),
        (with_topic(slug="dup-alias", name_zh="新", name_en="New", aliases=["ＧＲＰＯ"]),
         "names both"),
        (with_topic(slug="bad-cat", name_zh="新", name_en="New", aliases=[], categories=["CS CL"]),
         "arXiv category"),
        (with_topic(slug="bad-tier", name_zh="新", name_en="New", aliases=[],
                    terms_en={"central": ["x"]}), "tier"),
    ]
    for data, message in cases:
        monkeypatch.setattr(topics, "_read_catalogue_file", lambda data=data: data)
        with pytest.raises(ValueError, match=message):
            load_catalogue.__wrapped__()


def test_cli_topics_json(settings, capsys) -> None:
    assert main(["topics", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    listed = [t for a in data["areas"] for g in a["groups"] for t in g["topics"]]
    assert len(listed) >= 30
    assert {"slug", "name_zh", "name_en", "aliases", "description", "categories"} <= set(listed[0])
    assert data["custom"] == []


def test_cli_topics_tree_and_custom(settings, capsys) -> None:
    assert main(["topics"]) == 0
    out = capsys.readouterr().out
    assert "AI 大模型" in out and "后训练 · Post-training  (post-training)" in out
    assert not Path(settings.db).exists()  # listing topics creates no database
    with Store(settings.db) as store:
        slug = custom_topic(store, "protein folding").slug
    assert main(["topics", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["custom"] == [{"slug": slug,
                                                             "text": "protein folding"}]
