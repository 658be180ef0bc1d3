package catalog

// truphone returns Truphone Connect's two SIM notifications, named as
// Truphone's type field names them. Truphone's payload identifies the SIM
// by ICCID (the event's deviceId) and its subscription.
func truphone() []*Entry {
	return []*Entry{
		{
			Name: "USAGE_THRESHOLD", Title: "Usage Threshold", Vendor: Truphone, Trigger: Change,
			Description: "A subscription's usage reaches a percentage of its allowance (used against total of a Balance); 80% by default. " +
				"It notifies once per crossing, and again only after usage has gone back below.",
			On:           On{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "USAGE_THRESHOLD", State: "reached", Fields: []string{"iccid", "subscription_id"}},
			Parameters: []Parameter{
				{Name: "thresholdPercent", Type: Number, Default: 80.0, ExclusiveMinimum: ptr(0), Maximum: ptr(100),
					Description: "Usage, as a percent of the allowance's total, at which the notification fires."},
			},
			build: func(v Values) parts {
				p := percentCrosses("crossedAbove", "used", v.Number("thresholdPercent"))
				p.fields = map[string]string{"iccid": "event.deviceId", "subscription_id": "new.planId"}
				return p
			},
		},
		{
			Name: "SUBSCRIPTION_END", Title: "Subscription End", Vendor: Truphone, Trigger: Change,
			Description:  "A subscription (a Plan) ends: its allowances are used up (status depleted) or it passed its expiry date (status expired).",
			On:           On{EntityTypes: []string{"Plan"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "SUBSCRIPTION_END", State: "ended", Fields: []string{"iccid", "subscription_id"}},
			build: func(Values) parts {
				return parts{
					when:   `old.status != new.status && (new.status == "depleted" || new.status == "expired")`,
					fields: map[string]string{"iccid": "event.deviceId", "subscription_id": "new.id"},
				}
			},
		},
	}
}
