/**
 * The quoting helper and the secret placeholders: exact strings (STYLE.md) and
 * the guarantees R3 rests on (values substituted only at render, once).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { envFileLines, envFileValue, shellJoin, shellQuote } from "../../../components/provisioning/shell";
import { MASK, maskSecrets, referencedSecrets, secretRef, substituteSecrets } from "../../../components/provisioning/placeholders";

describe("shellQuote", () => {
    const cases: [string, string][] = [
        ["/srv/onebox/app/releases/0123abcd", "/srv/onebox/app/releases/0123abcd"],
        ["root:root", "root:root"],
        ["", "''"],
        ["two words", "'two words'"],
        ["it's", "'it'\\''s'"],
        ["$(reboot)", "'$(reboot)'"],
        ["a;b", "'a;b'"],
        ["*.env", "'*.env'"],
        ["~", "'~'"],
        ["line\nbreak", "'line\nbreak'"],
    ];
    for (const [input, expected] of cases) {
        test(`quotes ${JSON.stringify(input)} as ${expected}`, () => {
            assert.equal(shellQuote(input), expected);
        });
    }

    test("shellJoin quotes each word and joins with spaces", () => {
        assert.equal(shellJoin(["put_file", "/etc/onebox/app/env/api.env", "0600", "root:root"]), "put_file /etc/onebox/app/env/api.env 0600 root:root");
        assert.equal(shellJoin(["echo", "a b", "c'd"]), "echo 'a b' 'c'\\''d'");
    });
});

describe("env file values", () => {
    test("values are single-quoted, literal for Compose, systemd and bash", () => {
        assert.equal(envFileValue("A", "p$w`x\"y\\z"), "'p$w`x\"y\\z'");
        assert.equal(envFileLines([["A", "1"], ["B", "two words"]]), "A='1'\nB='two words'\n");
    });

    test("a single quote is refused with the name, never the value", () => {
        assert.throws(() => envFileValue("SMTP_PASSWORD", "it's-a-secret"), (e: Error) => e.message.startsWith("SMTP_PASSWORD:") && !e.message.includes("it's-a-secret"));
    });
});

describe("secret placeholders (R3)", () => {
    test("secretRef writes the placeholder and rejects bad names", () => {
        assert.equal(secretRef("JWT_SECRET"), "{{secret:JWT_SECRET}}");
        assert.equal(secretRef("JWT_SECRET", "env"), "{{secret:JWT_SECRET|env}}");
        assert.throws(() => secretRef("jwt"), /UPPER_SNAKE_CASE/);
    });

    test("referencedSecrets lists each name once, sorted", () => {
        assert.deepEqual(referencedSecrets("{{secret:B}} {{secret:A|env}} {{secret:B|url}}"), ["A", "B"]);
    });

    test("substitution applies filters: raw, env (quoted), url (percent-encoded)", () => {
        assert.equal(substituteSecrets("postgresql://u:{{secret:P|url}}@h/db", { P: "a b/c'(d)*" }), "postgresql://u:a%20b%2Fc%27%28d%29%2A@h/db");
        assert.equal(substituteSecrets("{{secret:P}}|{{secret:P|env}}", { P: "x$y" }), "x$y|'x$y'");
    });

    test("a value that looks like a placeholder is not expanded again", () => {
        assert.equal(substituteSecrets("{{secret:A}}", { A: "{{secret:B}}", B: "leak" }), "{{secret:B}}");
    });

    test("every missing value is named", () => {
        assert.throws(() => substituteSecrets("{{secret:A}}{{secret:B}}{{secret:C}}", { B: "x" }), /no value for secrets A, C$/);
    });

    test("masking shows ******** (quoted for env files) and needs no values", () => {
        assert.equal(maskSecrets("{{secret:A}} {{secret:A|env}} {{secret:A|url}}"), `${MASK} '${MASK}' ${MASK}`);
    });
});
