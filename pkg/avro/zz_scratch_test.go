package avro

import (
	"fmt"
	"testing"

	"github.com/twmb/avro"
)

func TestScratch(t *testing.T) {
	s := avro.MustParse(`{"type":"record","name":"a.b.Invoice","namespace":"x.y","fields":[
	{"name":"old","type":["null",{"type":"record","name":"InvoiceEntity","fields":[{"name":"id","type":"string"}]}],"default":null},
	{"name":"new","type":["null","InvoiceEntity"],"default":null}]}`)
	r := s.Root()
	fmt.Printf("%q %q\n", r.Name, r.Namespace)
	fmt.Printf("%q %q\n", r.Fields[0].Type.Branches[1].Name, r.Fields[0].Type.Branches[1].Namespace)
	fmt.Printf("%#v\n", r.Fields[1].Type.Branches[1].Type)
}
