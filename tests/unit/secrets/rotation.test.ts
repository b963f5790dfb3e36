/** Rotation periods: whole `days`-day periods from 1970-01-01 UTC, labelled by their first day. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { nextRotation, rotationLabel } from "../../../components/secrets/rotation";

const at = (iso: string) => new Date(iso);

void describe("rotationLabel / nextRotation", () => {
    void it("0 days: never rotates (no label, no next date)", () => {
        assert.equal(rotationLabel(0, at("2026-11-23T12:00:00Z")), undefined);
        assert.equal(nextRotation(0, at("2026-11-23T12:00:00Z")), undefined);
    });

    void it("90 days: 2026-11-23 is day 20780, in the period of days 20700-20789 (2026-09-04 to 2026-12-02)", () => {
        assert.equal(rotationLabel(90, at("2026-11-23T12:00:00Z")), "90d-2026-09-04");
        assert.equal(nextRotation(90, at("2026-11-23T12:00:00Z")), "2026-12-03");
    });

    void it("one label for the whole period, a new one from the first millisecond of the next", () => {
        assert.equal(rotationLabel(90, at("2026-09-04T00:00:00Z")), "90d-2026-09-04");
        assert.equal(rotationLabel(90, at("2026-12-02T23:59:59.999Z")), "90d-2026-09-04");
        assert.equal(rotationLabel(90, at("2026-12-03T00:00:00Z")), "90d-2026-12-03");
        assert.equal(rotationLabel(90, at("2026-09-03T23:59:59.999Z")), "90d-2026-06-06");
    });

    void it("the label carries the interval, so changing it rotates at once", () => {
        assert.equal(rotationLabel(30, at("2026-11-23T12:00:00Z")), "30d-2026-11-03");
        assert.notEqual(rotationLabel(30, at("2026-11-23T12:00:00Z")), rotationLabel(90, at("2026-11-23T12:00:00Z")));
    });

    void it("refuses negative or fractional days", () => {
        assert.throws(() => rotationLabel(-1, at("2026-11-23T00:00:00Z")), /whole number >= 0/);
        assert.throws(() => rotationLabel(1.5, at("2026-11-23T00:00:00Z")), /whole number >= 0/);
    });
});
