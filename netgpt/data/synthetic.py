"""A synthetic XS-Video-like data set, in the released JSON format, at any size (seeded, byte-identical).

The generative process (log10 units; every draw comes from one `numpy.random.default_rng(seed)`):

1. Topics: T = `topic_count(videos)`: XS-Video's 535 topics over 117,720 videos scaled to the set's size (535
   at full scale, 136 at 30,000 videos), at least 30 for a small set. Each has a distinct two-word Chinese
   name, a popularity weight ∝ 1 / rank^0.8, a trending centre date (ranks spread evenly over
   2024-11-25..2025-01-02 by golden-ratio steps, ± 1 day) and a spread of 2-6 days. Authors: videos // 4, each
   with a weight ∝ 1 / rank^0.7 (so most have several videos), a home platform (Douyin .30, Kuaishou .20,
   Xigua .15, Toutiao .15, Bilibili .20: the release's five platforms; its mix is not published, so these
   shares are an assumption), a latent skill s = N(0, 0.5) plus, for the 7% "star" authors, U(1.2, 2.8) (a
   right tail of big creators, visible in their fans and their other videos), fans ~ 10^N(3 + 0.8 s, 0.8) and
   home topics: one (70%) or two (30%) distinct topics drawn by topic weight. This is an assumption, not a
   measurement of XS-Video: short-video creators are niche, posting mostly within one or two topics.
2. Videos: author by weight; topic = one of the author's home topics (uniformly) with probability
   `home_topic_share` (default HOME_TOPIC_SHARE = 0.85), else by topic weight over all topics; platform = the
   author's home one (85%) or any, so every topic still spans platforms; post time = the topic's centre + N(0,
   spread) days, clipped to the posting window, at a random time of day. The title holds the topic's words as
   #hashtags and 0-2 "effect words": each of HOT_WORDS adds +0.35, each of COLD_WORDS adds -0.35 to z.
3. Heat h = log(1 + number of videos of the same topic posted in the 72 hours before this one), standardised
   over the data set (mean 0, sd 1), so the level mix does not drift with the data set's size.
4. z = 1.25 + s + 0.4 h + words + ε, ε ~ N(0, 0.3): log10 engagement on Douyin's scale. The video's final
   "lead" count, its likes, is M = 0 when z < 0, else 10^z times the platform's cut scale (Xigua's cuts are
   1/8 of Douyin's, Bilibili's 1/15), at least the least M of the level 10^z earns on Douyin: so a given z
   earns the same level on every platform, except a level the platform skips (on Bilibili one like is already
   level 2). The other counts are fractions of M (never above it); Douyin shows views 0, Xigua shares and
   collects are 0 in 90% of videos, Bilibili comment counts 0 in 90% of videos.
5. Label: `netgpt.data.levels.influence_level` of the final state's counts. z's spread and tail are set so
   that the levels follow the released labels' skew (docs/data.md#the-level-rule; in a fragment of the
   release: L0 5%, L1 26%, L2 14%, L3 27%, L4 16%, L5-8 at most 5% each, L9 rare). Measured, 3,000 videos
   (seed 0): L0 3.8%, L1 23.0, L2 20.1, L3 27.2, L4 15.3, L5 6.0, L6 2.3, L7 1.3, L8 0.8, L9 0.1; L2 runs high
   because no Bilibili video can be level 1 (its cuts skip it) and Bilibili's share is assumed, not known.
6. States: 2-5 crawls (p .28 .30 .25 .17), 1-11 days apart, the last 14-16 days after posting. A count at
   crawl day d is the final count times the growth curve g(d) = (1 - e^-(d+.5)/τ) / (1 - e^-(D+.5)/τ), τ ~
   U(1.5, 5) days per video (D = last crawl day), so counts are cumulative; 2% of videos with 3+ states get
   one small decrease of likes in a middle state (a deleted like), as real crawls show. Fans grow slowly.
7. Comments: Poisson(2.15 + 0.5 log(1 + new comments since the previous crawl)) per state, at most 12, about
   2.4 a sample as in the release (~923k comments over 381,926 samples); Chinese phrases, timed between the
   previous crawl (or the post time) and the crawl date, with a province.
8. What the released records look like beyond the fields' types (seen in a real slice of the release), so that
   everything fed synthetic data meets it too: `sentiment` is absent from 28% of records; 10% of comments have
   no `short_id` and 15% an empty `IP地址`; 20% of videos have an empty title (their description then carries
   the title's words, so the title's signal stays readable); 12% of videos have a fractional duration (6.293),
   the others an integer; some descriptions hold a newline, a tab or a double quote; URLs have the platforms'
   real shapes; the file is indented with 3 spaces.

What a model can reach (`oracle`, over the rated, non-final samples): topic heat is visible in the same-topic
neighbours posted earlier, the author's skill in the author's earlier videos and fans, the words in the title;
ε (sd 0.3 in log10, about half of a level's width) is not, but a sample's likes, and its earlier states',
reveal M up to the unknown growth τ. Knowing every latent term but ε, the most probable level is right on
about 65% of samples (`Oracle.latent`); adding the likes of the sample and its earlier states, on about 91%
(`Oracle.latent_and_likes`, near the most any model can reach). Seed 0: 0.661 / 0.900 at 300 videos, 0.654 /
0.914 at 3,000.
"""

from __future__ import annotations

import bisect
import json
import math
import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

from netgpt.atomic import atomic_path
from netgpt.data.levels import CUT_SCALE, DOUYIN_CUTS, PLATFORM_CUTS, influence_level
from netgpt.data.schema import PLATFORMS, SECONDS_PER_DAY, SENTIMENTS

POST_START = datetime(2024, 11, 25)
POST_END = datetime(2025, 1, 2, 23, 59, 59)
PLATFORM_WEIGHTS = (0.30, 0.20, 0.15, 0.15, 0.20)
HOT_WORDS = ("震撼", "独家", "揭秘", "泪目", "爆笑", "重磅")
COLD_WORDS = ("日常", "随手拍", "记录", "打卡", "碎碎念", "分享")
FULL_SCALE_VIDEOS = 117_720
FULL_SCALE_TOPICS = 535
"""XS-Video's videos and topics (docs/data.md#the-release): the generator keeps their ratio."""
MIN_TOPICS = 30
GOLDEN_STEP = (5**0.5 - 1) / 2
WORD_EFFECT = 0.35
HEAT_EFFECT = 0.4
SKILL_SD = 0.5
STAR_SHARE = 0.07
STAR_BOOST = (1.2, 2.8)
NOISE_SD = 0.3
BASE_Z = 1.25
HOME_TOPIC_SHARE = 0.85
TWO_HOME_TOPICS = 0.3
SENTIMENT_ABSENT = 0.28
COMMENT_ID_ABSENT = 0.10
REGION_EMPTY = 0.15
TITLE_EMPTY = 0.20
FRACTIONAL_DURATION = 0.12
INDENT = 3
COMMENT_BASE = 2.15
MAX_COMMENTS = 12
COMMENTS_PER_SAMPLE = 923_000 / 381_926
"""XS-Video's comments per sample (docs/data.md#the-release: ~923k comments over 381,926 samples), which
the Poisson rate of step 7 is set to give."""
TAU_RANGE = (1.5, 5.0)
"""Each video's growth time constant τ is uniform over this range (days), step 6 of the process."""

_TOPIC_WORDS_TEXT = (
    "冬日 夜景 美食 旅行 萌宠 亚冬会 跨年 春运 雪景 火锅 科技 新能源 篮球 足球 电影 音乐 读书 考研 健身 "
    "手工 家居 汽车 国潮 非遗 航天 高铁 熊猫 咖啡 奶茶 烟花 灯会 滑雪 冰雕 年货 古镇 海边 露营 动漫 "
    "游戏 摄影 舞蹈 书法 茶艺 农村 城市 校园 职场 育儿 养生 天气 地铁 博物馆 演唱会 马拉松 机器人 芯片 无人机"
)
_TOPIC_WORDS = tuple(_TOPIC_WORDS_TEXT.split())
_TOPIC_PAIRS = tuple((a, b) for a in _TOPIC_WORDS for b in _TOPIC_WORDS if a != b)
"""Topic names are distinct ordered pairs of words (3,306 of them, enough for 535 topics and more)."""
_TITLE_TEMPLATES = (
    "{a}的{b}有多美？",
    "原来{a}还能这样玩",
    "第一次体验{a}，{b}太惊喜了",
    "{a}和{b}，你更喜欢哪个",
    "三分钟看懂{a}",
    "{a}现场，{b}氛围拉满",
    "关于{a}的十个冷知识",
    "今天带大家看看{a}",
)
_DESCRIPTION_TEMPLATES = (
    "记录{a}的美好瞬间，{b}全程跟拍",
    '这期视频聊聊"{a}"，顺便说说{b}',
    "{a}攻略来了\n{b}一定要收藏",
    "用镜头带你走进{a}\t{b}",
    "关于{a}，评论区聊聊你的看法",
)
_COMMENTS = (
    "太美了！",
    "这是哪里拍的？",
    "收藏了，周末去看",
    "讲得很清楚",
    "支持一下",
    "哈哈哈哈笑死我了",
    "求背景音乐",
    "第一次见，涨知识了",
    "博主辛苦了",
    "有点意思",
    "不太认同这个观点",
    "期待下一期",
    "看哭了",
    "已转发给朋友",
    "这个必须点赞",
    "拍得真好",
)
_PROVINCES_TEXT = (
    "北京 上海 天津 重庆 河北 山西 辽宁 吉林 黑龙江 江苏 浙江 安徽 福建 江西 山东 河南 湖北 湖南 广东 海南 "
    "四川 贵州 云南 陕西 甘肃 青海 内蒙古 广西 西藏 宁夏 新疆 香港 澳门 台湾"
)
_PROVINCES = tuple(_PROVINCES_TEXT.split())
_URL_FORMATS = {
    "抖音": "https://www.douyin.com/share/video/{id}",
    "快手": "https://www.kuaishou.com/short-video/{id}",
    "西瓜": "https://www.ixigua.com/{id}",
    "头条": "https://www.toutiao.com/video/{id}/",
    "哔哩哔哩": "https://www.bilibili.com/video/av{id}",
}


def _video_url(platform: str, index: int) -> str:
    if platform == "哔哩哔哩":
        return _URL_FORMATS[platform].format(id=113_000_000_000_000 + index * 7919)
    return _URL_FORMATS[platform].format(id=7_440_000_000_000_000_000 + index * 104_729)


def topic_count(videos: int) -> int:
    """How many topics `videos` videos are drawn from: XS-Video's 535 topics scaled to the data set's size
    (about 220 videos a topic, as in the release), at least MIN_TOPICS (and at most a third of the videos)
    so that a small set still has topics to tell apart."""
    scaled = round(FULL_SCALE_TOPICS * videos / FULL_SCALE_VIDEOS)
    return max(1, scaled, min(MIN_TOPICS, videos // 3))


def _zipf_weights(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def _home_topics(rng: np.random.Generator, topic_weights: np.ndarray, n_authors: int) -> np.ndarray:
    """Per author, two distinct topics drawn by weight without replacement (one when there is one topic).

    Gumbel top-k: the k largest of log(weight) + Gumbel noise are a weighted draw without replacement,
    vectorised over all authors (numpy's `choice(replace=False)` takes one author per call).
    """
    keys = np.log(topic_weights) + rng.gumbel(size=(n_authors, len(topic_weights)))
    return np.argsort(-keys, axis=1, kind="stable")[:, : min(2, len(topic_weights))]


def _crawl_days(rng: np.random.Generator, states: int) -> list[int]:
    """Crawl days after posting: `states` of them, 1-11 apart, the last 14-16 (fewer if they don't fit)."""
    last = int(rng.integers(14, 17))
    for _ in range(20):
        gaps = rng.integers(1, 12, size=states - 1)
        first = last - int(gaps.sum())
        if first >= 0:
            return [first, *(first + np.cumsum(gaps)).tolist()]
    return [last - int(rng.integers(1, 12)), last]


def _heat(topic: np.ndarray, post_s: np.ndarray, window_s: int) -> np.ndarray:
    """How many videos of the same topic were posted in the `window_s` seconds before each video."""
    key = topic.astype(np.int64) * 10**9 + post_s
    ordered = np.sort(key)
    return np.searchsorted(ordered, key, side="left") - np.searchsorted(ordered, key - window_s, side="left")


def _platform_lead(platform: str, z: float) -> int:
    """The lead count M for Douyin-scale log10 engagement `z`, carried onto the platform's own scale.

    10^z times the platform's cut scale, raised to the least M of the level 10^z reaches on Douyin where
    rounding down would fall short of it, so a given z earns the same level on every platform (or the next
    one, where the platform skips a level)."""
    if z < 0:
        return 0
    x = 10**z
    level_start = bisect.bisect_right(DOUYIN_CUTS, x) - 1
    return max(PLATFORM_CUTS[platform][level_start], int(x * CUT_SCALE[platform]))


def _final_counts(rng: np.random.Generator, platform: str, lead: int) -> dict[str, int]:
    def part(low: float, high: float) -> int:
        return int(lead * rng.uniform(low, high))

    counts = {
        "likes": lead,
        "views": 0 if platform == "抖音" else part(20, 80),
        "shares": part(0.02, 0.3),
        "collects": part(0.03, 0.4),
        "comment_count": part(0.02, 0.3),
    }
    if platform == "西瓜" and rng.random() < 0.9:
        counts["shares"] = counts["collects"] = 0
    if platform == "哔哩哔哩" and rng.random() < 0.9:
        counts["comment_count"] = 0
    return counts


def _format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class _Generator:
    """Holds the seeded draws; `samples()` yields the released JSON objects in sample-id order."""

    def __init__(self, videos: int, seed: int, home_topic_share: float = HOME_TOPIC_SHARE) -> None:
        if videos < 1:
            raise ValueError(f"videos: expected an integer >= 1, got {videos}")
        if not 0.0 <= home_topic_share <= 1.0:
            raise ValueError(f"home_topic_share: expected a share in [0, 1], got {home_topic_share}")
        self.rng = np.random.default_rng(seed)
        self.videos = videos
        self.comment_serial = 0
        rng = self.rng
        n_topics = topic_count(videos)
        pairs = rng.permutation(len(_TOPIC_PAIRS))[:n_topics]
        self.topic_names = [" ".join(_TOPIC_PAIRS[k]) for k in pairs]
        window_days = (POST_END - POST_START).days + 1
        # Popular topics spread evenly over the window (golden-ratio steps in rank order, jittered by a day):
        # drawn uniformly, a few dominant topics landing late or early would swing the test split's share
        # (posted after 2024-12-20, about a third of the window) from 2% to 60% of the videos by seed.
        golden = np.modf(np.arange(n_topics) * GOLDEN_STEP)[0] * window_days
        topic_centre = np.clip(golden + rng.uniform(-1, 1, n_topics), 0, window_days - 1e-6)
        topic_spread = rng.uniform(2, 6, n_topics)

        n_authors = max(1, videos // 4)
        self.author_ids = [str(5_550_000 + 37 * a) for a in range(n_authors)]
        author_home = rng.choice(len(PLATFORMS), size=n_authors, p=PLATFORM_WEIGHTS)
        star = rng.random(n_authors) < STAR_SHARE
        self.author_skill = rng.normal(0, SKILL_SD, n_authors) + star * rng.uniform(*STAR_BOOST, n_authors)
        self.author_fans = 10 ** rng.normal(3 + 0.8 * self.author_skill, 0.8)

        topic_weights = _zipf_weights(n_topics, 0.8)
        home_topics = _home_topics(rng, topic_weights, n_authors)
        home_count = np.where(rng.random(n_authors) < TWO_HOME_TOPICS, home_topics.shape[1], 1)

        self.author = rng.choice(n_authors, size=videos, p=_zipf_weights(n_authors, 0.7))
        home_pick = rng.integers(0, home_count[self.author])
        stays_home = rng.random(videos) < home_topic_share
        self.topic = np.where(
            stays_home,
            home_topics[self.author, home_pick],
            rng.choice(n_topics, size=videos, p=topic_weights),
        )
        keep_home = rng.random(videos) < 0.85
        self.platform = np.where(
            keep_home, author_home[self.author], rng.choice(len(PLATFORMS), size=videos, p=PLATFORM_WEIGHTS)
        )
        post_day = np.clip(
            topic_centre[self.topic] + rng.normal(0, topic_spread[self.topic]), 0, window_days - 1e-6
        )
        self.post_s = (
            np.floor(post_day) * SECONDS_PER_DAY + rng.integers(0, SECONDS_PER_DAY, videos)
        ).astype(np.int64)
        self.word_effect = np.zeros(videos)
        self.effect_words: list[list[str]] = []
        for v in range(videos):
            chosen = []
            for _ in range(int(rng.choice(3, p=(0.4, 0.4, 0.2)))):
                hot = rng.random() < 0.5
                chosen.append(str(rng.choice(HOT_WORDS if hot else COLD_WORDS)))
                self.word_effect[v] += WORD_EFFECT if hot else -WORD_EFFECT
            self.effect_words.append(chosen)
        heat = np.log1p(_heat(self.topic, self.post_s, 72 * 3600))
        self.heat = (heat - heat.mean()) / max(float(heat.std()), 1e-9)
        self.expected_z = BASE_Z + self.author_skill[self.author] + HEAT_EFFECT * self.heat + self.word_effect
        self.z = self.expected_z + rng.normal(0, NOISE_SD, videos)

    def _title(self, v: int, topic_words: list[str]) -> str:
        rng = self.rng
        template = _TITLE_TEMPLATES[int(rng.integers(len(_TITLE_TEMPLATES)))]
        text = template.format(a=topic_words[0], b=topic_words[-1])
        words = self.effect_words[v]
        prefix = f"【{words[0]}】" if words else ""
        suffix = f"，{words[1]}" if len(words) > 1 else ""
        hashtags = " ".join(f"#{word}" for word in topic_words)
        return f"{prefix}{text}{suffix} {hashtags}"

    def _comments(self, count: int, start: datetime, end: datetime) -> dict[str, dict[str, str]]:
        rng = self.rng
        span = max(0, int((end - start).total_seconds()))
        comments = {}
        for c in range(count):
            self.comment_serial += 1
            moment = start + timedelta(seconds=int(rng.integers(0, span + 1)))
            comment = {
                "short_id": f"c{self.comment_serial:x}",
                "评论用户ID": str(7_770_000 + int(rng.integers(0, 10 * self.videos))),
                "评论内容": _COMMENTS[int(rng.integers(len(_COMMENTS)))],
                "评论时间": _format_time(moment),
                "IP地址": _PROVINCES[int(rng.integers(len(_PROVINCES)))],
            }
            if rng.random() < REGION_EMPTY:
                comment["IP地址"] = ""
            if rng.random() < COMMENT_ID_ABSENT:
                del comment["short_id"]
            comments[str(c)] = comment
        return comments

    def video_states(self, v: int, first_id: int) -> list[dict]:
        """The 2-5 released samples of video `v`, with sample ids from `first_id` on."""
        rng = self.rng
        platform = PLATFORMS[int(self.platform[v])]
        post = POST_START + timedelta(seconds=int(self.post_s[v]))
        lead = _platform_lead(platform, float(self.z[v]))
        final = _final_counts(rng, platform, lead)
        level = influence_level(
            platform, final["likes"], final["shares"], final["collects"], final["comment_count"]
        )
        days = _crawl_days(rng, int(rng.choice((2, 3, 4, 5), p=(0.28, 0.30, 0.25, 0.17))))
        tau = rng.uniform(*TAU_RANGE)
        fans_growth = rng.uniform(0, 0.004)
        growth = [(1 - math.exp(-(d + 0.5) / tau)) / (1 - math.exp(-(days[-1] + 0.5) / tau)) for d in days]
        per_state = [{name: int(value * g) for name, value in final.items()} for g in growth[:-1]] + [final]
        if len(days) >= 3 and rng.random() < 0.02:
            middle = int(rng.integers(1, len(days) - 1))
            drop = int(rng.integers(1, 4))
            per_state[middle]["likes"] = max(0, per_state[middle - 1]["likes"] - drop)
        topic_words = self.topic_names[int(self.topic[v])].split()[:2]
        author = int(self.author[v])
        fans0 = int(self.author_fans[author])
        seconds = rng.lognormal(5.0, 0.8) if platform == "哔哩哔哩" else rng.uniform(7, 180)
        duration = round(float(seconds), 3) if rng.random() < FRACTIONAL_DURATION else int(seconds)
        title = self._title(v, topic_words)
        description = _DESCRIPTION_TEMPLATES[int(rng.integers(len(_DESCRIPTION_TEMPLATES)))].format(
            a=topic_words[0], b=topic_words[-1]
        )
        if rng.random() < TITLE_EMPTY:
            title, description = "", f"{title} {description}"
        shared = {
            "url": _video_url(platform, v),
            "sentiment": SENTIMENTS[int(rng.choice(3, p=(0.70, 0.05, 0.25)))],
            "描述": description,
            "标题": title,
            "发布用户ID": self.author_ids[author],
            "视频时长（秒）": duration,
            "平台": platform,
            "发布时间": _format_time(post),
            "话题": self.topic_names[int(self.topic[v])],
            "影响力等级": level,
        }
        states = []
        previous_comments = 0
        previous_end = post
        for i, (day, counts) in enumerate(zip(days, per_state, strict=True)):
            crawl = date.fromordinal(post.date().toordinal() + day)
            crawl_end = datetime(crawl.year, crawl.month, crawl.day, 23, 59, 59)
            new_comments = max(0, counts["comment_count"] - previous_comments)
            n_comments = min(MAX_COMMENTS, int(rng.poisson(COMMENT_BASE + 0.5 * math.log1p(new_comments))))
            state = {
                **shared,
                "当前时间": crawl.isoformat(),
                "当前粉丝量": fans0 + int(fans0 * fans_growth * day),
                "当前点赞量": counts["likes"],
                "当前播放量": counts["views"],
                "当前分享量": counts["shares"],
                "当前收藏量": counts["collects"],
                "当前评论量": counts["comment_count"],
                "评论": self._comments(n_comments, previous_end, crawl_end),
                "历史状态": list(range(first_id, first_id + i)),
            }
            if rng.random() < SENTIMENT_ABSENT:
                del state["sentiment"]
            states.append(state)
            previous_comments = counts["comment_count"]
            previous_end = crawl_end
        return states


def write_synthetic(
    path: str | os.PathLike[str], videos: int, seed: int, home_topic_share: float = HOME_TOPIC_SHARE
) -> Path:
    """Write `videos` synthetic videos (2-5 samples each) as released XS-Video JSON to `path`; return it.

    `home_topic_share`: the chance that a video's topic is one of its author's home topics (0 draws every
    topic independently of the author). Same arguments, same bytes. Written to a temporary name beside
    `path`, then renamed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = _Generator(videos, seed, home_topic_share)
    encoder = json.JSONEncoder(ensure_ascii=False, indent=INDENT)
    pad = " " * INDENT
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as file:
        file.write("{")
        sample_id = 0
        for v in range(videos):
            for state in generator.video_states(v, sample_id):
                body = encoder.encode(state).replace("\n", "\n" + pad)
                file.write(f'{"," if sample_id else ""}\n{pad}"{sample_id}": {body}')
                sample_id += 1
        file.write("\n}")
    return path


_ORACLE_TAUS = 32
_ORACLE_STEP = 0.0025
_ORACLE_SPAN = 4.0


@dataclass(frozen=True)
class Oracle:
    """What an oracle reaches on a synthetic data set, over its non-final samples (the rated ones).

    `latent`: the accuracy of the most probable level given the video's latent terms (author skill, topic
    heat, title words: `expected_z`) and platform, with only ε unknown. `latent_and_likes`: the same, also
    given the likes of the sample and of its earlier states and their crawl days, with τ unknown: the
    Bayes-optimal rating from everything but ε, τ and the noisy fractions of the other counts, so about the
    most any model can reach. `levels`: how many videos have each level 0-9."""

    latent: float
    latent_and_likes: float
    samples: int
    levels: tuple[int, ...]


def oracle(videos: int, seed: int, home_topic_share: float = HOME_TOPIC_SHARE) -> Oracle:
    """The `Oracle` of `write_synthetic(path, videos, seed, home_topic_share)` (the same draws, no file).

    Posteriors are taken on a grid of z (step 0.0025, ±4 noise sds around the expected z) and of τ (32
    values); a sample whose likes no (z, τ) of the grid gives exactly (a deleted like) falls back to the
    latent terms alone."""
    generator = _Generator(videos, seed, home_topic_share)
    offsets = np.arange(-_ORACLE_SPAN * NOISE_SD, _ORACLE_SPAN * NOISE_SD + _ORACLE_STEP / 2, _ORACLE_STEP)
    prior = np.exp(-0.5 * (offsets / NOISE_SD) ** 2)
    taus = TAU_RANGE[0] + (np.arange(_ORACLE_TAUS) + 0.5) * (TAU_RANGE[1] - TAU_RANGE[0]) / _ORACLE_TAUS
    hits = {"latent": 0, "latent_and_likes": 0}
    samples = 0
    levels = np.zeros(10, dtype=np.int64)
    for v in range(videos):
        states = generator.video_states(v, 0)
        platform = states[0]["平台"]
        truth = states[0]["影响力等级"]
        levels[truth] += 1
        z = generator.expected_z[v] + offsets
        lead = np.array([_platform_lead(platform, float(x)) for x in z], dtype=np.float64)
        cuts = np.array(PLATFORM_CUTS[platform])
        level_of = np.searchsorted(cuts, lead, side="right")
        post = date.fromisoformat(states[0]["发布时间"][:10])
        days = np.array([(date.fromisoformat(s["当前时间"]) - post).days for s in states], dtype=np.float64)
        likes = np.array([s["当前点赞量"] for s in states], dtype=np.float64)
        # growth[τ, state]: the share of the final count reached at each crawl (step 6)
        growth = (1 - np.exp(-(days[None, :] + 0.5) / taus[:, None])) / (
            1 - np.exp(-(days[-1] + 0.5) / taus[:, None])
        )
        latent_guess = int(np.argmax(np.bincount(level_of, weights=prior, minlength=10)))
        for i in range(len(states) - 1):
            seen = np.floor(lead[None, None, :] * growth[:, : i + 1, None]) == likes[None, : i + 1, None]
            weight = prior * seen.all(axis=1).mean(axis=0)
            if not weight.any():
                weight = prior
            guess = int(np.argmax(np.bincount(level_of, weights=weight, minlength=10)))
            hits["latent"] += latent_guess == truth
            hits["latent_and_likes"] += guess == truth
            samples += 1
    return Oracle(
        latent=hits["latent"] / max(samples, 1),
        latent_and_likes=hits["latent_and_likes"] / max(samples, 1),
        samples=samples,
        levels=tuple(int(n) for n in levels),
    )
