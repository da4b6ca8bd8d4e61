"""`digestbot sub follow | unfollow | keywords`, `digestbot feedback`: a reader's followed
authors, keywords and votes."""

from __future__ import annotations

import argparse
import json

from digestbot import subscribers
from digestbot.config import Settings
from digestbot.errors import UsageError
from digestbot.sources.papers import get_papers
from digestbot.store import Store
from digestbot.subscribers import feedback, profile


def _existing(store: Store, id: int) -> None:
    sub = subscribers.get(store, id)
    if sub is None or sub.status == subscribers.REMOVED:
        raise UsageError(f"没有编号为 {id} 的订阅者 / no subscriber #{id} (see `digestbot sub list`)")


def _show(store: Store, id: int) -> None:
    prof = profile.get_profile(store, id)
    none = "(无 / none)"
    print(f"关注作者 / followed authors: {' · '.join(prof.follows) or none}")
    print(f"必含关键词 / must: {' · '.join(prof.must) or none}")
    print(f"排除关键词 / exclude: {' · '.join(prof.exclude) or none}")


def cmd_sub_follow(settings: Settings, args: argparse.Namespace) -> int:
    with Store(settings.db) as store:
        _existing(store, args.id)
        if args.author:
            added = profile.follow(store, args.id, args.author)
            for name in args.author:
                if name.strip() and profile.clean_name(name) not in added:
                    print(f"已在关注 / already followed: {profile.clean_name(name)}")
        _show(store, args.id)
    return 0


def cmd_sub_unfollow(settings: Settings, args: argparse.Namespace) -> int:
    if not args.author and not args.all:
        raise UsageError("给出 --author NAME 或 --all / give --author NAME or --all")
    with Store(settings.db) as store:
        _existing(store, args.id)
        gone = profile.unfollow(store, args.id, None if args.all else args.author)
        if not gone:
            print("没有匹配的关注 / none of those was followed")
        _show(store, args.id)
    return 0


def cmd_sub_keywords(settings: Settings, args: argparse.Namespace) -> int:
    with Store(settings.db) as store:
        _existing(store, args.id)
        # Validate every word before the first write: one bad word changes nothing.
        for word in [*args.must, *args.exclude]:
            profile.clean_keyword(word)
        with store.db.atomic():
            if args.clear:
                profile.remove_keywords(store, args.id, None if args.clear == "all" else args.clear,
                                        None)
            for kind in ("must", "exclude"):
                if args.remove:
                    profile.remove_keywords(store, args.id, kind, args.remove)
                words = getattr(args, kind)
                if words:
                    profile.add_keywords(store, args.id, kind, words)
        _show(store, args.id)
    return 0


def cmd_feedback(settings: Settings, args: argparse.Namespace) -> int:
    with Store(settings.db) as store:
        _existing(store, args.id)
        votes = feedback.votes(store, args.id)
        titles = {pid: p.title for pid, p in get_papers(store, [v.arxiv_id for v in votes]).items()}
    if args.json:
        print(json.dumps([{"arxiv_id": v.arxiv_id, "vote": v.name, "at": v.at,
                           "title": titles.get(v.arxiv_id, "")} for v in votes],
                         ensure_ascii=False, indent=2))
        return 0
    if not votes:
        print("还没有投票 / no votes yet")
    for v in votes:
        mark = "👍" if v.vote == feedback.UP else "👎"
        print(f"{mark} {v.arxiv_id}  {v.at[:16]}  {titles.get(v.arxiv_id, '')[:80]}")
    ups = sum(v.vote == feedback.UP for v in votes)
    print(f"共 {len(votes)} 票(👍 {ups},👎 {len(votes) - ups})/ {len(votes)} votes "
          f"({ups} up, {len(votes) - ups} down)")
    return 0
