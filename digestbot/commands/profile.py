"""A chat's profile beyond topics: /follow, /unfollow, /must and /exclude (issue 16),
/notify: whether the chat hears a one-line notice on a day without a digest (issue 18), and
/learned and /forget: what the chat's 👍/👎 taught its ranking, and starting over (issue 17).

A followed author's new papers come whatever their topic scores; `must` keeps only papers
whose title or abstract mentions one of the words, `exclude` drops those that mention one.
Changes take effect in the chat's next digest.
"""

from __future__ import annotations

import unicodedata

from digestbot import rerank
from digestbot.commands.core import CommandContext, Reply, Run, ensure_subscriber, say
from digestbot.config import Settings
from digestbot.errors import UsageError
from digestbot.store import Store
from digestbot.subscribers import by_address, feedback, notices, subscriptions
from digestbot.subscribers import profile as profiles
from digestbot.subscribers.profile import KeywordKind

_CLEAR = {"all", "clear", "none", "全部", "清空"}


def _names(items: tuple[str, ...] | list[str]) -> str:
    return " · ".join(items)


def _current(store: Store, ctx: CommandContext) -> profiles.Profile:
    sub = by_address(store, ctx.channel, ctx.address)
    return profiles.get_profile(store, sub.id) if sub else profiles.Profile()


def cmd_follow(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    if not arg:
        follows = _current(store, ctx).follows
        if not follows:
            return Reply(say(lang, "还没有关注作者。例:/follow Yoshua Bengio",
                             "You follow no authors yet. Example: /follow Yoshua Bengio"))
        return Reply(say(lang, f"关注作者:{_names(follows)}", f"Followed authors: {_names(follows)}"))
    name = profiles.clean_name(arg)
    with store.db.atomic():
        sub = ensure_subscriber(store, ctx)
        added = profiles.follow(store, sub.id, [name])
    if not added:
        return Reply(say(lang, f"已在关注:{name}", f"Already following: {name}"))
    return Reply(say(
        lang,
        f"已关注:{name}。其新论文将出现在下一期摘要中(不论主题匹配度),并注明论文中的署名;"
        f"匹配错了可用 /unfollow {name} 取消,或加引号只匹配完整拼写:/follow \"{name}\"。",
        f"Following: {name}. Their new papers come in your next digest whatever the topic "
        f"scores, with the spelling the paper uses. If it matches the wrong person, /unfollow "
        f"{name}, or follow it in quotes to match that full spelling only: /follow \"{name}\"."))


def cmd_unfollow(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    if not arg:
        return Reply(say(lang, "用法:/unfollow 姓名 · /unfollow all", "Usage: /unfollow NAME · /unfollow all"))
    sub = by_address(store, ctx.channel, ctx.address)
    every = arg.strip().lower() in _CLEAR
    gone = profiles.unfollow(store, sub.id, None if every else [arg]) if sub else []
    if not gone:
        return Reply(say(lang, f"没有关注「{arg}」。发送 /follow 查看关注列表。",
                         f"You do not follow “{arg}”. Send /follow for the list."))
    return Reply(say(lang, f"已取消关注:{_names(gone)}", f"Unfollowed: {_names(gone)}"))


def _words(arg: str) -> list[str]:
    """Words split at commas (full-width ones too) and semicolons."""
    text = unicodedata.normalize("NFKC", arg).replace("、", ",").replace(";", ",")
    return [w.strip() for w in text.split(",") if w.strip()]


def _keywords(kind: KeywordKind, zh_name: str, en_name: str, example: str) -> Run:
    def run(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
        if not arg:
            words = getattr(_current(store, ctx), kind)
            usage = (f"用法:/{kind} 词1, 词2 · /{kind} -词 删除 · /{kind} clear 清空",
                     f"Usage: /{kind} word1, word2 · /{kind} -word removes · /{kind} clear")
            if not words:
                return Reply(say(lang, f"{zh_name}:(无)\n{usage[0]}\n例:{example}",
                                 f"{en_name}: (none)\n{usage[1]}\nExample: {example}"))
            return Reply(say(lang, f"{zh_name}:{_names(words)}\n{usage[0]}",
                             f"{en_name}: {_names(words)}\n{usage[1]}"))
        if arg.strip().lower() in _CLEAR:
            sub = by_address(store, ctx.channel, ctx.address)
            gone = profiles.remove_keywords(store, sub.id, kind, None) if sub else []
            return Reply(say(lang, f"已清空{zh_name}({len(gone)} 个)。",
                             f"Cleared {len(gone)} {en_name.lower()}."))
        items = _words(arg)
        drop = [w[1:].strip() for w in items if w.startswith("-")]
        add = [profiles.clean_keyword(w) for w in items if not w.startswith("-")]
        with store.db.atomic():
            sub = ensure_subscriber(store, ctx)
            if drop:
                profiles.remove_keywords(store, sub.id, kind, drop)
            profiles.add_keywords(store, sub.id, kind, add)
            words = getattr(profiles.get_profile(store, sub.id), kind)
        return Reply(say(lang, f"{zh_name}:{_names(words) or '(无)'}。下一期摘要起生效。",
                         f"{en_name}: {_names(words) or '(none)'}. From your next digest."))
    return run


cmd_must = _keywords("must", "必含关键词", "Must-have keywords", "/must diffusion, 扩散模型")
cmd_exclude = _keywords("exclude", "排除关键词", "Excluded keywords", "/exclude speech, 语音")


_ON, _OFF = {"on", "yes", "开", "开启"}, {"off", "no", "关", "关闭"}


def cmd_notify(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    if ctx.channel not in notices.CHANNELS:
        return Reply(say(lang, "提醒只在 Telegram 和 Slack 中提供。",
                         "Notices are sent in Telegram and Slack only."))
    choice = arg.strip().lower()
    if choice not in _ON | _OFF:
        sub = by_address(store, ctx.channel, ctx.address)
        on = bool(sub and notices.wants_notices(store, sub.id))
        return Reply(say(lang, f"假日提醒:{'开' if on else '关'}。用法:/notify on | off",
                         f"Holiday notices: {'on' if on else 'off'}. Usage: /notify on | off"))
    with store.db.atomic():
        sub = ensure_subscriber(store, ctx)
        notices.set_notify(store, sub.id, choice in _ON)
    if choice in _ON:
        return Reply(say(lang, "已开启:arXiv 假日无公告时,会在这里收到一行提醒。",
                         "On: on an arXiv holiday (no announcement) this chat gets a one-line "
                         "notice."))
    return Reply(say(lang, "已关闭假日提醒。", "Holiday notices off."))


def cmd_learned(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    """What the re-ranker learned from the chat's votes: words it leans to and from, and the
    liked papers it ranks highest. Computed now from the votes (milliseconds, no LLM)."""
    sub = by_address(store, ctx.channel, ctx.address)
    votes = feedback.votes(store, sub.id) if sub else []
    ups = sum(v.vote == feedback.UP for v in votes)
    learned = rerank.learn(store, sub.id, [s.topic for s in subscriptions(store, sub.id)]) \
        if sub else None
    if learned is None:
        return Reply(say(
            lang, f"已有 {len(votes)} 票(👍 {ups} · 👎 {len(votes) - ups})。至少 "
            f"{rerank.MIN_VOTES} 票且 👍 👎 都有时,摘要才会按你的喜好排序;点摘要里每篇论文下的 "
            "👍/👎 即可。",
            f"{len(votes)} votes so far ({ups} up, {len(votes) - ups} down). Your digest is "
            f"ranked by your taste from {rerank.MIN_VOTES} votes with both 👍 and 👎: tap them "
            "under each paper of your digest."))
    likes, dislikes = learned.top_words(store)
    best = learned.favourites(3)
    zh = [f"从 {len(votes)} 票(👍 {ups} · 👎 {len(votes) - ups})学到:",
          f"偏好:{', '.join(likes) or '—'}", f"不感兴趣:{', '.join(dislikes) or '—'}",
          "最像你喜欢的:", *(f"• {t}" for t in best), "重新开始:/forget"]
    en = [f"Learned from {len(votes)} votes ({ups} up, {len(votes) - ups} down):",
          f"Leaning to: {', '.join(likes) or '—'}", f"Leaning away from: {', '.join(dislikes) or '—'}",
          "Closest to your taste:", *(f"• {t}" for t in best), "Start over: /forget"]
    return Reply(say(lang, "\n".join(zh), "\n".join(en)))


def cmd_forget(store: Store, settings: Settings, ctx: CommandContext, arg: str, lang: str) -> Reply:
    sub = by_address(store, ctx.channel, ctx.address)
    gone = feedback.forget(store, sub.id) if sub else 0
    return Reply(say(lang, f"已删除 {gone} 票;摘要恢复按主题匹配度排序。",
                     f"Deleted {gone} votes; your digest is ranked by topic match again."))


def vote(store: Store, ctx: CommandContext, value: int, paper_id: str) -> int:
    """A 👍/👎 tapped under a paper of the chat's digest (Telegram and Slack alike), recorded
    for the chat's subscription (the last tap counts; in a group, any member's tap is the
    group's); the subscriber's id, for the caller to show the state (`feedback.votes_on`).
    UsageError when the chat has no subscription or the paper is unknown."""
    sub = by_address(store, ctx.channel, ctx.address)
    if sub is None:
        raise UsageError(zh="本聊天没有订阅。", en="This chat is not subscribed.")
    feedback.record(store, sub.id, paper_id, value)
    return sub.id
