package catalog_test

import "testing"

func TestTruphoneNotificationsFireAsTruphoneSays(t *testing.T) {
	loadBuiltin(t).run(t, truphoneCases())
}

func truphoneCases() []entryCases {
	const iccid = "893000000002391231"
	usage := func(used float64) map[string]any {
		return map[string]any{"id": "bal-1", "accountId": "acc-1", "unit": "MB", "total": 1000.0, "used": used, "remaining": 1000 - used, "planId": "ZHNhc2Rhc2Q="}
	}
	sub := map[string]any{"id": "ZHNhc2Rhc2Q=", "accountId": "acc-1", "name": "Europe 10GB", "status": "active", "autoRenew": false}
	ids := map[string]any{"iccid": iccid, "subscription_id": "ZHNhc2Rhc2Q="}

	return []entryCases{
		{entry: "USAGE_THRESHOLD", cases: []sample{
			{name: "usage reaches 80%", op: "UPDATE", deviceID: iccid, old: usage(700), new: usage(850), fire: true, fields: ids},
			{name: "usage lands on exactly 80%", op: "UPDATE", deviceID: iccid, old: usage(799), new: usage(800), fire: true, fields: ids},
			{name: "usage was already past 80%", op: "UPDATE", deviceID: iccid, old: usage(850), new: usage(900)},
			{name: "usage stays below 80%", op: "UPDATE", deviceID: iccid, old: usage(100), new: usage(500)},
		}},
		{entry: "USAGE_THRESHOLD", params: map[string]any{"thresholdPercent": 50}, cases: []sample{
			{name: "usage reaches 50%", op: "UPDATE", deviceID: iccid, old: usage(400), new: usage(600), fire: true},
			{name: "usage stays below 50%", op: "UPDATE", deviceID: iccid, old: usage(100), new: usage(400)},
		}},
		{entry: "SUBSCRIPTION_END", cases: []sample{
			{name: "the plan is used up", op: "UPDATE", deviceID: iccid, old: sub, new: with(sub, "status", "depleted"), fire: true, fields: ids},
			{name: "the plan passes its expiry date", op: "UPDATE", deviceID: iccid, old: sub, new: with(sub, "status", "expired"), fire: true, fields: ids},
			{name: "the plan is suspended", op: "UPDATE", deviceID: iccid, old: sub, new: with(sub, "status", "suspended")},
			{name: "an ended plan changes", op: "UPDATE", deviceID: iccid, old: with(sub, "status", "expired"), new: with(sub, "status", "expired", "name", "x")},
		}},
	}
}
