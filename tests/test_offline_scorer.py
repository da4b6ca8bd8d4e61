"""The offline scorer: calibrated on the real cs.CL feed, explainable, deterministic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from digestbot.enrich import offline
from digestbot.enrich.offline import SCORER, first_sentence, score_offline
from digestbot.models import Topic
from digestbot.topics import get_topic, load_catalogue
from tests.conftest import SHARED_ARXIV, needs_shared

FEED = SHARED_ARXIV / "rss_new_cs.CL_2026-08-13.xml"
SEED = SHARED_ARXIV.parent.parent / "seed" / "arxivdaily-sample.txt"

# Papers of 2026-08-13 a 后训练 subscriber wants at the top: RL with rubric / LLM-judge
# rewards, reward models, GRPO, SFT + RL post-training, on-policy distillation.
POST_TRAINING_HITS = {
    "2608.11669": "Rubric Dropout … Reward Hacking in Rubric-as-Reward RL",
    "2606.04923": "Reward Hacking in Rubric-Based Reinforcement Learning",
    "2608.11787": "GRPO for Financial Advice Generation",
    "2608.11755": "MuseCritic: Learning Multi-Aspect Song Rewards",
    "2608.10812": "Reference-Free Post-Training of Open LLMs for Multilingual MT",
    "2608.11715": "Revisiting Post-Training for Multilingual Tool Use",
    "2608.11829": "Understanding On-Policy Distillation through Test-Time Scaling",
}
# Everything in the feed that also belongs in a 后训练 digest (the top 12 must come from here).
POST_TRAINING_RELEVANT = set(POST_TRAINING_HITS) | {
    "2608.11660",  # knowledge editing by on-policy self-distillation
    "2605.16409",  # SFT + RL of multimodal LLMs
    "2608.11691",  # multimodal unlearning with RL post-training
    "2608.11342",  # fine-tuning alternative for personalization
    "2608.11573",  # DPO / RL for self-correction
    "2608.11408",  # LLM unlearning
    "2608.12253",  # multi-agent RL of LLM policies
    "2608.11758",  # catastrophic forgetting in fine-tuning
    "2608.12062",  # preference tree optimization (DPO)
    "2608.00180",  # RL alignment
}
# Speech, audio and sign language: nothing for a 后训练 subscriber.
SPEECH_AND_SIGN = {
    "2608.11332": "Gloss-Free Representation Learning for Cross-Dataset Sign Spotting",
    "2608.11352": "ODE-Based Transformer Decoders for Iterative Sign Language Translation",
    "2608.11441": "DonorRank: … Low-Resource Cross-Lingual Speech Recognition",
    "2608.11629": "Easper: An Accessible ASR Pipeline for Language Documentation",
    "2608.11650": "Confucius4-TTS: Transcript-Free Cross-Lingual Zero-Shot TTS",
    "2608.12099": "RT-SEMamba: Real-Time Speech Enhancement Mamba",
    "2608.11587": "Infant-Centered Audio Understanding with Whisper",
    "2508.02038": "Marco-Voice Technical Report",
}


def _feed(path: Path) -> dict[str, tuple[str, str]]:
    """id → (title, abstract) from an arXiv RSS file (plain RSS items, parsed here on purpose)."""
    out = {}
    for item in etree.parse(str(path)).iter("item"):
        arxiv_id = item.findtext("link").rsplit("/", 1)[-1]
        abstract = re.split(r"Abstract:\s*", item.findtext("description"), maxsplit=1)[-1]
        out[arxiv_id] = (" ".join(item.findtext("title").split()), abstract.strip())
    return out


@pytest.fixture(scope="module")
def feed() -> dict[str, tuple[str, str]]:
    return _feed(FEED)


def _scores(feed: dict[str, tuple[str, str]], slug: str) -> dict[str, tuple[int, str]]:
    topic = get_topic(slug)
    return {i: score_offline(title, abstract, topic) for i, (title, abstract) in feed.items()}


@needs_shared
def test_feed_has_the_papers_we_calibrated_on(feed) -> None:
    assert len(feed) == 139
    assert set(POST_TRAINING_HITS) | set(SPEECH_AND_SIGN) <= set(feed)


@needs_shared
def test_post_training_ranks_rl_preference_and_reward_papers_high(feed) -> None:
    scores = _scores(feed, "post-training")
    for arxiv_id, title in POST_TRAINING_HITS.items():
        assert scores[arxiv_id][0] >= 70, (title, scores[arxiv_id])
    for arxiv_id, title in SPEECH_AND_SIGN.items():
        assert scores[arxiv_id][0] < 40, (title, scores[arxiv_id])
    ranked = sorted(scores, key=lambda i: (-scores[i][0], i))
    assert set(ranked[:12]) <= POST_TRAINING_RELEVANT, ranked[:12]
    # A digest at the default threshold 60 stays a digest, not the whole feed.
    assert 10 <= sum(s >= 60 for s, _ in scores.values()) <= 30


@needs_shared
def test_speech_topic_finds_the_speech_papers(feed) -> None:
    scores = _scores(feed, "speech-recognition")
    for arxiv_id in ("2608.11332", "2608.11441", "2608.11629", "2608.11352"):
        assert scores[arxiv_id][0] >= 70, (SPEECH_AND_SIGN[arxiv_id], scores[arxiv_id])
    for arxiv_id in POST_TRAINING_HITS:
        assert scores[arxiv_id][0] < 40, scores[arxiv_id]


@needs_shared
@pytest.mark.skipif(not SEED.is_file(), reason="../shared/seed is absent")
def test_seed_entries_hit_post_training() -> None:
    """The three 后训练 entries of the arXivDaily sample score ≥ 70, the DPO survey first."""
    text = SEED.read_text(encoding="utf-8")
    entries = re.split(r"^(?=\d{4}\.\d{5} \d{4}-\d\d-\d\d )", text, flags=re.M)[1:]
    assert len(entries) == 3
    topic = get_topic("post-training")
    scores = []
    for entry in entries:
        title = [line for line in entry.splitlines() if line.strip()][1]
        abstract = entry.split("英文摘要", 1)[1].strip()
        score, reason = score_offline(title, abstract, topic)
        assert score >= 70, (title, score, reason)
        scores.append(score)
    assert scores[0] >= 90  # "A Comprehensive Survey of Direct Preference Optimization"


# -- self-contained ---------------------------------------------------------------------------

GRPO_TITLE = "Group Relative Policy Optimization with Rubric Rewards for Math Reasoning"
GRPO_ABSTRACT = (
    "Reinforcement learning with verifiable rewards (RLVR) improves reasoning of large "
    "language models. We train a process reward model and use it inside GRPO, comparing with "
    "DPO and supervised fine-tuning (SFT) baselines. Rollouts are generated asynchronously."
)
UNRELATED = ("Counting Coral Reef Fish with Underwater Cameras",
             "We count fish in underwater video with a convolutional detector and a tracker.")


def post_training() -> Topic:
    return load_catalogue().topics["post-training"]


def test_scorer_name() -> None:
    assert SCORER == "offline-v2"


def test_on_topic_high_unrelated_low_with_reasons() -> None:
    score, reason = score_offline(GRPO_TITLE, GRPO_ABSTRACT, post_training())
    assert score >= 70
    assert reason.startswith("命中: ")
    assert {"GRPO", "RLVR"} <= set(reason.removeprefix("命中: ").split(", "))
    score, reason = score_offline(*UNRELATED, post_training())
    assert (score, reason) == (0, offline.NO_MATCH)


def test_generic_llm_words_alone_do_not_make_a_paper_relevant() -> None:
    score, reason = score_offline(
        "Large Language Models for Legal Contracts",
        "We prompt a large language model (LLM) to find risky clauses; the LLM reasons "
        "about policy and preference clauses.",
        post_training(),
    )
    assert score == 0 and reason == offline.NO_MATCH
    # One passing strong mention stays well below a subscriber's threshold.
    score, _ = score_offline("Legal Clause Finding", "We use fine-tuning on contracts.",
                             post_training())
    assert 0 < score < 40


def test_overlapping_terms_count_once_longest_wins() -> None:
    score, reason = score_offline("A study", "We train a process reward model.", post_training())
    assert reason == "命中: process reward model"


def test_title_weighs_more_than_abstract() -> None:
    in_title, _ = score_offline("DPO for Dialogue Agents", "We study dialogue agents.",
                                post_training())
    in_abstract, _ = score_offline("Dialogue Agents", "We study dialogue agents with DPO.",
                                   post_training())
    assert in_title > in_abstract > 0


def test_acronyms_match_exactly_words_match_loosely() -> None:
    topic = post_training()
    assert score_offline("On sft and grpo", "dpo everywhere", topic)[0] == 0
    assert score_offline("On SFT", "", topic)[1] == "命中: SFT"
    assert score_offline("DPOs and GRPO-based training", "", topic)[1] == "命中: DPO, GRPO"
    # Word edges: URL, CURL and PPOX do not contain "RL" or "PPO".
    assert score_offline("CURL URLs PPOX", "", topic)[0] == 0
    for variant in ("Reward-Models", "reward models", "REWARD MODEL"):
        assert score_offline(variant, "", topic)[1] == "命中: reward model", variant
    for variant in ("fine tuning", "Fine-Tuning", "finetuning"):
        assert "fine-tuning" in score_offline(variant, "", topic)[1], variant


def test_full_width_and_chinese_text() -> None:
    topic = post_training()
    assert score_offline("ＧＲＰＯ ａｎｄ ＤＰＯ", "", topic)[1] == "命中: DPO, GRPO"
    score, reason = score_offline("基于GRPO的大模型后训练", "", topic)
    assert score >= 70 and {"后训练", "GRPO"} <= set(reason.removeprefix("命中: ").split(", "))


def test_negative_cues_lower_the_score_and_are_named() -> None:
    abstract = "Unlike supervised fine-tuning and RLHF, our method is training-free."
    with_cue, reason = score_offline("Prompt Steering", abstract, post_training())
    without, _ = score_offline("Prompt Steering", abstract.replace("training-free", "new"),
                               post_training())
    assert with_cue < without and reason.endswith("; 反例: training-free")


def test_repetition_helps_but_is_capped() -> None:
    topic = post_training()
    once, _ = score_offline("A study", "We use GRPO.", topic)
    thrice, _ = score_offline("A study", "We use GRPO. GRPO works. GRPO again.", topic)
    many, _ = score_offline("A study", "GRPO. " * 50, topic)
    assert once < thrice == many


def test_deterministic_and_rebuilt_when_terms_change() -> None:
    topic = post_training()
    first = score_offline(GRPO_TITLE, GRPO_ABSTRACT, topic)
    offline._matchers.clear()
    offline._prepare.cache_clear()
    assert score_offline(GRPO_TITLE, GRPO_ABSTRACT, topic) == first
    ad_hoc = Topic("ad-hoc", "临时", "Ad hoc", "coral reefs", terms_en=["coral reef"])
    assert score_offline(*UNRELATED, ad_hoc)[1] == "命中: coral reef"  # default weight
    changed = Topic("ad-hoc", "临时", "Ad hoc", "fish", terms_en=["fish"])
    assert score_offline(*UNRELATED, changed)[1] == "命中: fish"
    assert score_offline(*UNRELATED, Topic("empty", "空", "Empty", "nothing")) == (
        0, offline.NO_MATCH)


def test_every_catalogue_topic_scores_its_own_names() -> None:
    """Each topic finds a title made of its English name: no topic is unreachable offline."""
    for topic in load_catalogue().topics.values():
        core = [t for t in topic.terms_en if topic.term_weights[t] == 3]
        title = f"{core[0]} and {core[-1]}"
        score, reason = score_offline(title, f"We study {title}.", topic)
        assert score >= 70, (topic.slug, title, score, reason)


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("We propose X. It works.", "We propose X."),
        ("Methods, e.g. GRPO and DPO, help. Next.", "Methods, e.g. GRPO and DPO, help."),
        ("Smith et al. Showed this in 2020. Next.", "Smith et al. Showed this in 2020."),
        ("Accuracy rises by 3.5 points. Next.", "Accuracy rises by 3.5 points."),
        ("As Fig. 2 shows, it scales. Next one.", "As Fig. 2 shows, it scales."),
        ("Details are in Appendix A. We then test.", "Details are in Appendix A."),
        ("Does it work? Yes.", "Does it work?"),
        ("We study\n  long   context. Next.", "We study long context."),
        ("No final period here", "No final period here"),
        ("我们提出一种方法。实验表明有效。", "我们提出一种方法。"),
        ("", ""),
    ],
)
def test_first_sentence(text: str, first: str) -> None:
    assert first_sentence(text) == first
