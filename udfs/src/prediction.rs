//! The struct `categorize` returns, and its assembly from class probabilities.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, Float64Builder, Int64Builder, ListBuilder, StringBuilder, StructArray, StructBuilder,
};
use arrow::datatypes::{DataType, Field, Fields};
use lakecat_core::Taxonomy;
use lakecat_core::metrics::argmax;

use crate::error::RowError;

/// Fields of `top_k`'s elements.
fn alternative_fields() -> Fields {
    Fields::from(vec![
        Field::new("category_id", DataType::Int64, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("confidence", DataType::Float64, true),
    ])
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

/// The fields of a prediction for a taxonomy `depth` levels deep.
pub fn prediction_fields(depth: usize) -> Fields {
    let mut fields = vec![
        Field::new("category_id", DataType::Int64, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("path", list_of(DataType::Utf8), true),
    ];
    fields.extend((1..=depth).map(|level| Field::new(format!("level_{level}"), DataType::Utf8, true)));
    fields.extend([
        Field::new("confidence", DataType::Float64, true),
        Field::new("top_k", list_of(DataType::Struct(alternative_fields())), true),
        Field::new("confident_category_id", DataType::Int64, true),
        Field::new("confident_path", list_of(DataType::Utf8), true),
        Field::new("model", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
        // The stage of `error` on its own (input, refused, fetch, decode, text, inference), so
        // programs branch on a value rather than on the message's prefix.
        Field::new("error_stage", DataType::Utf8, true),
    ]);
    Fields::from(fields)
}

/// How predictions are summarised; fixed for one query.
#[derive(Debug, Clone)]
pub struct PredictionSettings {
    pub top_k: usize,
    pub confidence_threshold: f64,
}

/// Builds the prediction struct array row by row.
pub struct PredictionBuilder<'a> {
    taxonomy: &'a Taxonomy,
    classes: &'a [u32],
    model: &'a str,
    settings: PredictionSettings,
    depth: usize,
    /// Names from the root to each class.
    class_paths: Vec<Vec<&'a str>>,
    /// The nodes on some class's lineage, each with its depth; lineages below refer to them by
    /// position, so that a row's subtree probabilities are summed into a reused vector.
    lineage_nodes: Vec<(u32, usize)>,
    /// Positions in `lineage_nodes` of each class's ancestors (root first, the class last).
    lineages: Vec<Vec<usize>>,
    /// Per-row scratch: subtree probability of each lineage node, and class order for top_k.
    mass: Vec<f64>,
    order: Vec<usize>,
    category_id: Int64Builder,
    category: StringBuilder,
    path: ListBuilder<StringBuilder>,
    levels: Vec<StringBuilder>,
    confidence: Float64Builder,
    top_k: ListBuilder<StructBuilder>,
    confident_category_id: Int64Builder,
    confident_path: ListBuilder<StringBuilder>,
    model_name: StringBuilder,
    error: StringBuilder,
    error_stage: StringBuilder,
}

impl<'a> PredictionBuilder<'a> {
    pub fn new(
        taxonomy: &'a Taxonomy,
        classes: &'a [u32],
        model: &'a str,
        settings: PredictionSettings,
        capacity: usize,
    ) -> Self {
        let depth = taxonomy.max_depth();
        let top_k_values = StructBuilder::new(
            alternative_fields(),
            vec![
                Box::new(Int64Builder::new()) as Box<dyn ArrayBuilder>,
                Box::new(StringBuilder::new()),
                Box::new(Float64Builder::new()),
            ],
        );
        let mut lineage_nodes = Vec::new();
        let mut position_of = HashMap::new();
        let lineages = classes
            .iter()
            .map(|&class| {
                let lineage = taxonomy.lineage(class);
                lineage
                    .iter()
                    .enumerate()
                    .map(|(depth, &node)| {
                        *position_of.entry(node).or_insert_with(|| {
                            lineage_nodes.push((node, depth));
                            lineage_nodes.len() - 1
                        })
                    })
                    .collect()
            })
            .collect();
        Self {
            taxonomy,
            classes,
            model,
            settings,
            depth,
            class_paths: classes.iter().map(|&class| taxonomy.path(class)).collect(),
            mass: vec![0.0; lineage_nodes.len()],
            lineage_nodes,
            lineages,
            order: Vec::with_capacity(classes.len()),
            category_id: Int64Builder::with_capacity(capacity),
            category: StringBuilder::new(),
            path: ListBuilder::new(StringBuilder::new()),
            levels: (0..depth).map(|_| StringBuilder::new()).collect(),
            confidence: Float64Builder::with_capacity(capacity),
            top_k: ListBuilder::new(top_k_values),
            confident_category_id: Int64Builder::with_capacity(capacity),
            confident_path: ListBuilder::new(StringBuilder::new()),
            model_name: StringBuilder::new(),
            error: StringBuilder::new(),
            error_stage: StringBuilder::new(),
        }
    }

    /// Appends one row: its class probabilities, or why it has none.
    pub fn append(&mut self, row: Result<&[f32], &RowError>) {
        self.model_name.append_value(self.model);
        let probabilities = match row {
            Ok(probabilities) => probabilities,
            Err(error) => {
                self.append_failure(error);
                return;
            }
        };
        let best = argmax(probabilities.iter().copied());
        let class = self.classes[best];
        self.category_id.append_value(i64::from(class));
        self.category.append_option(self.taxonomy.node(class).map(|node| node.name.as_str()));
        let names = &self.class_paths[best];
        self.path.append_value(names.iter().map(|name| Some(*name)));
        for (level, builder) in self.levels.iter_mut().enumerate() {
            builder.append_option(names.get(level).copied());
        }
        self.confidence.append_value(f64::from(probabilities[best]));
        self.append_top_k(probabilities);
        match self.confident_node(probabilities) {
            Some(node) => {
                self.confident_category_id.append_value(i64::from(node));
                self.confident_path.append_value(self.taxonomy.path(node).into_iter().map(Some));
            }
            None => {
                // Not even a top-level category is probable enough: an empty path, not NULL,
                // because the model did answer.
                self.confident_category_id.append_null();
                self.confident_path.append_value(std::iter::empty::<Option<&str>>());
            }
        }
        self.error.append_null();
        self.error_stage.append_null();
    }

    fn append_failure(&mut self, error: &RowError) {
        self.category_id.append_null();
        self.category.append_null();
        self.path.append_null();
        for builder in &mut self.levels {
            builder.append_null();
        }
        self.confidence.append_null();
        self.top_k.append_null();
        self.confident_category_id.append_null();
        self.confident_path.append_null();
        self.error.append_value(error.to_string());
        self.error_stage.append_value(error.stage.name());
    }

    fn append_top_k(&mut self, probabilities: &[f32]) {
        let order = &mut self.order;
        order.clear();
        order.extend(0..probabilities.len());
        let k = self.settings.top_k.min(order.len());
        if k > 0 && k < order.len() {
            order.select_nth_unstable_by(k - 1, |&a, &b| probabilities[b].total_cmp(&probabilities[a]));
        }
        order.truncate(k);
        order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]).then(a.cmp(&b)));
        let values = self.top_k.values();
        for &index in order.iter() {
            let class = self.classes[index];
            field::<Int64Builder>(values, 0).append_value(i64::from(class));
            field::<StringBuilder>(values, 1).append_option(self.taxonomy.node(class).map(|node| node.name.as_str()));
            field::<Float64Builder>(values, 2).append_value(f64::from(probabilities[index]));
            values.append(true);
        }
        self.top_k.append(true);
    }

    /// The deepest node whose subtree probability reaches the threshold (the most probable of
    /// those at that depth).
    fn confident_node(&mut self, probabilities: &[f32]) -> Option<u32> {
        self.mass.fill(0.0);
        for (lineage, &probability) in self.lineages.iter().zip(probabilities) {
            for &position in lineage {
                self.mass[position] += f64::from(probability);
            }
        }
        self.lineage_nodes
            .iter()
            .zip(&self.mass)
            .filter(|(_, probability)| **probability >= self.settings.confidence_threshold)
            .max_by(|((a, a_depth), pa), ((b, b_depth), pb)| a_depth.cmp(b_depth).then(pa.total_cmp(pb)).then(b.cmp(a)))
            .map(|((node, _), _)| *node)
    }

    pub fn finish(mut self) -> StructArray {
        let mut arrays: Vec<ArrayRef> =
            vec![Arc::new(self.category_id.finish()), Arc::new(self.category.finish()), Arc::new(self.path.finish())];
        arrays.extend(self.levels.iter_mut().map(|builder| Arc::new(builder.finish()) as ArrayRef));
        arrays.extend([
            Arc::new(self.confidence.finish()) as ArrayRef,
            Arc::new(self.top_k.finish()),
            Arc::new(self.confident_category_id.finish()),
            Arc::new(self.confident_path.finish()),
            Arc::new(self.model_name.finish()),
            Arc::new(self.error.finish()),
            Arc::new(self.error_stage.finish()),
        ]);
        StructArray::new(prediction_fields(self.depth), arrays, None)
    }
}

fn field<T: ArrayBuilder>(builder: &mut StructBuilder, index: usize) -> &mut T {
    builder.field_builder::<T>(index).expect("top_k field builders are created with these types")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Stage;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type};
    use lakecat_core::taxonomy::split_path;

    #[test]
    fn assembles_levels_top_k_and_confident_path() {
        let taxonomy = Taxonomy::from_paths(
            "t",
            ["Apparel > Topwear > Shirts", "Apparel > Topwear > Tshirts", "Footwear > Shoes"].map(split_path),
        )
        .unwrap();
        let classes = taxonomy.leaves();
        let settings = PredictionSettings { top_k: 2, confidence_threshold: 0.7 };
        let mut builder = PredictionBuilder::new(&taxonomy, &classes, "m@1", settings, 2);
        // Shirts 0.45 and Tshirts 0.40: neither leaf is sure, their parent Topwear is (0.85).
        let shirts = classes.iter().position(|&c| taxonomy.path(c).ends_with(&["Shirts"])).unwrap();
        let mut probabilities = vec![0.0; 3];
        probabilities[shirts] = 0.45;
        let tshirts = classes.iter().position(|&c| taxonomy.path(c).ends_with(&["Tshirts"])).unwrap();
        probabilities[tshirts] = 0.40;
        probabilities[3 - shirts - tshirts] = 0.15;
        builder.append(Ok(&probabilities));
        builder.append(Err(&RowError::new(Stage::Decode, "image is empty (0 bytes)")));
        let array = builder.finish();
        assert_eq!(array.len(), 2);
        let column = |name: &str| array.column_by_name(name).unwrap().clone();
        assert_eq!(column("category").as_string::<i32>().value(0), "Shirts");
        assert_eq!(column("level_1").as_string::<i32>().value(0), "Apparel");
        assert_eq!(column("level_3").as_string::<i32>().value(0), "Shirts");
        assert!((column("confidence").as_primitive::<Float64Type>().value(0) - 0.45).abs() < 1e-6);
        let confident = column("confident_path");
        let confident = confident.as_list::<i32>().value(0);
        let confident: Vec<&str> = confident.as_string::<i32>().iter().flatten().collect();
        assert_eq!(confident, ["Apparel", "Topwear"]);
        let top_k = column("top_k");
        let first = top_k.as_list::<i32>().value(0);
        let first = first.as_struct();
        assert_eq!(first.len(), 2);
        assert_eq!(first.column(1).as_string::<i32>().value(1), "Tshirts");
        assert!(column("error").is_null(0));
        assert_eq!(column("error").as_string::<i32>().value(1), "decode: image is empty (0 bytes)");
        assert!(column("error_stage").is_null(0));
        assert_eq!(column("error_stage").as_string::<i32>().value(1), "decode");
        assert!(column("category_id").as_primitive::<Int64Type>().is_null(1));
        assert_eq!(column("model").as_string::<i32>().value(1), "m@1");
    }
}
