"""Finding the lines of a block that contain a keyword, at memchr speed.

Used by the pack matcher (a rule's required literal) and by redaction (its
trigger words): both must look at every byte of every line, and both are
fastest when Python never loops over lines that cannot matter.
"""
from __future__ import annotations

# How common a byte is in log text; lower = rarer. Digits, spaces and everyday
# punctuation are everywhere; letters follow English letter frequency, upper
# case rarer than lower; symbols like '#', '|', '%' are rare. A wrong guess
# only costs speed: KeywordFinder notices a common byte and falls back.
_BY_FREQUENCY = b"etaoinshrdlcumwfgypbvkjxqz"
_COMMON = set(b"0123456789 .,:;-_/=\t'\"()[]")


def rarity(byte: int) -> int:
    if byte in _COMMON or byte >= 0x80:
        return 100
    ch = bytes([byte])
    i = _BY_FREQUENCY.find(ch)
    if i >= 0:
        return 95 - i                    # lower case: 70 (z) .. 95 (e)
    i = _BY_FREQUENCY.upper().find(ch)
    if i >= 0:
        return 40 - i                    # upper case: 15 (Z) .. 40 (E)
    return 9                             # '#', '|', '%', '@', '{' …


class KeywordFinder:
    """Finds the lines of a block that contain one keyword, fast.

    CPython's bytes.find is memchr for a one-byte needle (~10x faster than
    for a longer one), so the finder hunts the keyword's rarest byte and
    checks the keyword around each hit. If that byte turns out to be common
    in this log (more than one false hit per ~2 KiB), the block is finished
    with a plain bytes.find of the whole keyword and the next block tries the
    keyword's next-rarest byte; when every byte has proved common, plain find
    is used for a while before the hunt starts over.
    """

    # Finders are shared between threads (one Redactor serves every run); what a
    # reader needs together, the hunted byte and its offset, is one tuple that is
    # replaced in one assignment, so a switch mid-read can never mix two picks.
    __slots__ = ("kw", "order", "pick", "hunt", "mode_find", "retry_in")

    def __init__(self, kw: bytes):
        self.kw = kw
        order, seen = [], set()
        for i in sorted(range(len(kw)), key=lambda i: (rarity(kw[i]), -i)):
            if kw[i] not in seen:
                seen.add(kw[i])
                order.append(i)
        self.order = order
        self._use(0)
        self.mode_find = len(kw) == 1       # a one-byte keyword: plain find is memchr already
        self.retry_in = 0

    def _use(self, pick: int) -> None:
        off = self.order[pick]
        self.hunt = (self.kw[off:off + 1], off)
        self.pick = pick

    @property
    def byte(self) -> bytes:
        return self.hunt[0]

    @property
    def offset(self) -> int:
        return self.hunt[1]

    def find_lines(self, block: bytes, starts: list) -> None:
        """Append the start offset of each line of `block` holding the keyword (once per line)."""
        find, rfind, kw = block.find, block.rfind, self.kw
        if self.mode_find:
            i = find(kw)
            while i >= 0:
                starts.append(rfind(b"\n", 0, i) + 1)
                e = find(b"\n", i)                # at most one hit per line
                i = find(kw, e) if e >= 0 else -1
            if len(kw) > 1:
                self.retry_in -= 1
                if self.retry_in <= 0:
                    self.mode_find = False
            return
        (byte, off), startswith = self.hunt, block.startswith
        budget = (len(block) >> 11) + 64         # false hits allowed in this block
        i = find(byte, off)
        while i >= 0:
            if startswith(kw, i - off):
                starts.append(rfind(b"\n", 0, i) + 1)
                e = find(b"\n", i)
                i = find(byte, e + off) if e >= 0 else -1
            else:
                budget -= 1
                if budget < 0:                   # common byte here: finish with find
                    if self.pick + 1 < len(self.order):
                        self._use(self.pick + 1)     # next block: the next-rarest byte
                        self.mode_find, self.retry_in = True, 1
                    else:
                        self._use(0)
                        self.mode_find, self.retry_in = True, 64
                    j = find(kw, i - off + 1)
                    while j >= 0:
                        starts.append(rfind(b"\n", 0, j) + 1)
                        e = find(b"\n", j)
                        j = find(kw, e) if e >= 0 else -1
                    return
                i = find(byte, i + 1)


class KeywordSet:
    """Several keywords, one memchr pass per distinct byte they hunt.

    Keywords whose finders chose the same rare byte (`Key`, `KEY` and `AKIA`
    all hunt `K`) share one scan of the block. Starts may repeat (a line with
    two keywords); callers that need each line once de-duplicate.
    """

    __slots__ = ("finders",)

    def __init__(self, keywords):
        self.finders = [KeywordFinder(k) for k in keywords]

    def find_lines(self, block: bytes, starts: list) -> None:
        groups: dict[bytes, list] = {}
        for f in self.finders:
            hunt = f.hunt
            if f.mode_find:
                f.find_lines(block, starts)
            else:
                groups.setdefault(hunt[0], []).append((f, hunt[1]))
        for byte, fs in groups.items():
            if len(fs) == 1:
                fs[0][0].find_lines(block, starts)
            else:
                _hunt_shared(block, byte, fs, starts)


def _hunt_shared(block: bytes, byte: bytes, fs: list, starts: list) -> None:
    """fs: (finder, offset of `byte` in its keyword), read once by the caller."""
    find, rfind, startswith = block.find, block.rfind, block.startswith
    checks = [(f.kw, off) for f, off in fs]
    budget = (len(block) >> 11) + 64
    i = find(byte)
    while i >= 0:
        for kw, off in checks:
            j = i - off
            if j >= 0 and startswith(kw, j):
                starts.append(rfind(b"\n", 0, i) + 1)
                e = find(b"\n", i)
                i = find(byte, e + 1) if e >= 0 else -1
                break
        else:
            budget -= 1
            if budget < 0:                 # common byte here: each keyword on its own, as a lone finder would
                for f, _ in fs:
                    f.mode_find = True     # plain find for this block, then its next-rarest byte
                    if f.pick + 1 < len(f.order):
                        f._use(f.pick + 1)
                        f.retry_in = 1
                    else:
                        f._use(0)
                        f.retry_in = 64
                    f.find_lines(block, starts)
                return
            i = find(byte, i + 1)


class FoldedKeywordSet:
    """Lower-case keywords found in any mix of cases (`PassWord`, `SeCrEt`), at memchr speed.

    Each keyword hunts both cases of one of its letters (`k`/`K` for `key`) and
    checks the keyword, lowered, around each hit; keywords hunting the same
    letter share the scans. The letter is the keyword's rarest by `rarity` to
    begin with; when a letter gives more false hits in a block than the budget
    (one per 2 KiB: it is common in this log), that block is finished for its
    keywords by lowering the block once (a C-level copy) and plain finds, and
    from the next block on they hunt their next letter that has not proved
    common, so a log settles on letters it rarely holds and a clean block costs
    two memchr scans per letter and nothing else. A keyword whose every letter
    proved common searches lowered blocks for a while, then starts over.
    """

    __slots__ = ("kws", "orders", "plan", "retry")

    RETRY_BLOCKS = 64         # lowered blocks for a keyword without a rare letter, then it tries again

    def __init__(self, keywords):
        self.kws = sorted({k.lower() for k in keywords})
        orders = []
        for kw in self.kws:
            letters = [i for i in range(len(kw)) if 0x61 <= kw[i] <= 0x7A] or [0]
            order, seen = [], set()
            for i in sorted(letters, key=lambda i: (rarity(kw[i]), -i)):
                if kw[i] not in seen:
                    seen.add(kw[i])
                    order.append(i)
            orders.append(order)
        self.orders = orders
        self.retry = [0] * len(self.kws)
        # What a reader needs together is one tuple, replaced in one assignment (a
        # Redactor serves every run's thread): the pick per keyword, the letters that
        # proved common, the scans (letter, its other case, checks) and the keywords
        # searched in a lowered block instead.
        self.plan = self._plan([0] * len(self.kws), frozenset())

    def _plan(self, picks: list, common: frozenset) -> tuple:
        groups: dict[bytes, list] = {}
        lowered = []
        for k, kw in enumerate(self.kws):
            pick = picks[k]
            if pick < 0:
                lowered.append(kw)
                continue
            off = self.orders[k][pick]
            groups.setdefault(kw[off:off + 1], []).append((kw, off, len(kw), k))
        scans = tuple((b, b.upper() if b != b.upper() else None, tuple(c)) for b, c in groups.items())
        return (tuple(picks), common, scans, tuple(lowered))

    def find_lines(self, block: bytes, starts: list) -> None:
        """Append the start offset of each line of `block` holding a keyword (a line may repeat)."""
        picks, common, scans, lowered = plan = self.plan
        find, rfind = block.find, block.rfind
        budget0 = (len(block) >> 11) + 64
        failed = None                          # letters that proved common in this block
        redo = list(lowered)
        for byte, upper, checks in scans:
            budget = budget0
            for b in (byte, upper) if upper else (byte,):
                i = find(b)
                while i >= 0:
                    for kw, off, n, _ in checks:
                        j = i - off
                        if j >= 0 and block[j:j + n].lower() == kw:
                            starts.append(rfind(b"\n", 0, i) + 1)
                            e = find(b"\n", i)
                            i = find(b, e + 1) if e >= 0 else -1
                            break
                    else:
                        budget -= 1
                        if budget < 0:
                            break
                        i = find(b, i + 1)
                if budget < 0:
                    break
            if budget < 0:
                failed = (failed or set()) | {byte}
                redo += [kw for kw, _, _, _ in checks]
        if redo:
            low = block.lower()
            lfind, lrfind = low.find, low.rfind
            for kw in redo:
                i = lfind(kw)
                while i >= 0:
                    starts.append(lrfind(b"\n", 0, i) + 1)
                    e = lfind(b"\n", i)
                    if e < 0:
                        break
                    i = lfind(kw, e)
        if failed or lowered:
            self._replan(plan, failed or set())

    def _replan(self, plan: tuple, failed: set) -> None:
        picks, common, scans, _ = plan
        common = common | failed
        new = list(picks)
        for k, kw in enumerate(self.kws):
            pick = new[k]
            if pick < 0:                       # searching lowered blocks: count down, then start over
                self.retry[k] -= 1
                if self.retry[k] <= 0:
                    new[k] = 0
                    common = frozenset()
                continue
            order = self.orders[k]
            if kw[order[pick]:order[pick] + 1] not in failed:
                continue
            nxt = pick + 1
            while nxt < len(order) and kw[order[nxt]:order[nxt] + 1] in common:
                nxt += 1
            if nxt < len(order):
                new[k] = nxt
            else:
                new[k], self.retry[k] = -1, self.RETRY_BLOCKS
        if new != list(picks) or common != plan[1]:
            self.plan = self._plan(new, frozenset(common))
